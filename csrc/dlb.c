/*
 * dlb.c - the allocator core. See dlb.h for the contract; core/reference.py is the same algorithm in
 * readable Python and the two must agree bit for bit (tests/core/test_differential.py).
 *
 * Stage numbers in the comments match the reference. Everything lives in the caller's buffer:
 *   [dlb_site header][circuit configs][charger configs][circuit state][charger state][scratch ...]
 */
#include "dlb.h"

#include <string.h>

/* Inlining hints, which gcc -O2 gets wrong both ways here: the once-called passes (charger_pass,
 * ceilings_fair, sort_pairs, admit) kept out of dlb_step keep its frame (the deepest call chain, see
 * dlb.h) from growing; the path walk inlined into the admission loop saves a call and six saved
 * registers per walk. */
#if defined(__GNUC__)
#define DLB_NOINLINE __attribute__((noinline))
#define DLB_INLINE __attribute__((always_inline)) inline
#else
#define DLB_NOINLINE
#define DLB_INLINE inline
#endif

#define HOUR_MS 3600000
#define INF ((int64_t)1 << 62)
#define KEY_PKEY_BITS 52
#define KEY_PKEY_MAX (((int64_t)1 << KEY_PKEY_BITS) - 1)
#define LAXITY_OFFSET ((int64_t)1 << 51)
#define TNONE ((int64_t)-1) /* "no time": every stored timestamp is >= 0 */
#define DLB_HOLDS 4         /* lowered set-points remembered per charger (reference: HOLDS) */
#define DLB_EV_HISTORY 12   /* EV-sum buckets per metered circuit (reference: EV_HISTORY) */

enum { TIER_STARVING = 0, TIER_STICKY = 1, TIER_OTHER = 2, TIER_IDLE = 3 };
/* or-ed into charger_scratch.tier (read by admit_fail alone) by stage 4: paused (sp = 0) and already marked
 * waiting, so a failure is not for rotation and remember() changes nothing */
#define TIER_WAITING 8
enum { KIND_DEMAND = 0, KIND_NODEMAND = 1, KIND_LOST = 2 };

/* Stage 1's record per charger for charger_pass's usual cases (in charger_state: one stream fewer in its
 * loop than an array of its own). ingest_charger writes it whenever it runs, and it runs for every charger
 * before its first usual case: key is 0 until then (dlb_init zeroes it) and while the charger is lost, and
 * no fresh reading (fresh = 1) has a head of 0. */
typedef struct {
    int64_t key;   /* the head of a fresh reading (fresh = 1) of the stored state (see reading_head) */
    /* byte offset in the circuit_acc array of evsum[phase_map[i]] of the charger's circuit, for each
     * conductor i (a 1-phase charger's 1 and 2: the same as 0, never used); configuration only */
    int32_t off[DLB_PHASES];
    /* the stored currents summed over the installed conductors: the energy of the next interval is this
     * times its length (charger_energy's sum, kept with every change of the stored currents) */
    int32_t esum;
    uint32_t used1; /* 1 << phase_map[0]: the used set on conductor 0 alone */
    uint8_t iclass; /* which usual case a reading of key is (IK_*) */
    uint8_t three;  /* installed phases == 3 */
} charger_in;

/* What the core remembers about one charger, split by use: charger_state holds what a step reads for
 * every charger (also a paused or waiting one), charger_cold what only a change of set-point, a start or
 * a phase switch touches. Every pass over the chargers then streams 184 bytes per charger instead of
 * 408 (at N = 10000, 1.8 MB instead of 4.1 MB). hold_end and cap_until summarise the cold histories so
 * that the per-step checks need not read them (see held_sp and stage 4). */
typedef struct {
    /* (t_last: as of the last charger_general, which first sets it to the previous step's now after a
     * usual case of charger_pass; only stage 1 reads it, and stage 4 for a lost charger, i.e. after that) */
    int64_t t_last, ok_since, on_since, off_since, wait_since, arrival, departure;
    int64_t delivered_mams, last_switch, below_since, reclaimed_at, probe_since;
    int64_t hold_end;  /* latest hold_until[] (TNONE without holds): no hold is in effect from then on */
    int64_t cap_until; /* the start cap blocks while now < cap_until (TNONE: not blocked) */
    int32_t meas[DLB_PHASES];
    int32_t state, sp, mode, energy_need_wh, reclaim_cap;
    uint8_t seen, lost, recover_at_once, in_session, probing;
    uint8_t counting; /* in_session && !lost as the last ingest left them (stage 1's energy reads it) */
    /* stage 4: 0 only if below_since == TNONE, !probing and reclaim_cap <= 0 (no reclaim state). Only
     * reclaim() sets any of them otherwise, and stage 4 recomputes this after each reclaim() call, so a
     * charger that never leaves stage 4's quick paths never has its three fields tested. */
    uint8_t reclaim_any;
    charger_in in; /* stage 1 (see charger_in) */
} charger_state;

typedef struct {
    int64_t hold_until[DLB_HOLDS + 1]; /* staircase of lowered set-points the EV may still apply */
    int64_t starts[DLB_MAX_STARTS];    /* start times, ascending (a ring of the last DLB_MAX_STARTS) */
    int64_t up_since;
    int32_t hold_sp[DLB_HOLDS + 1];
    int32_t switches, n_starts, n_holds;
    /* what hold_sp[0] is sure to keep until hold_until[0]: its own value, or for a merged head the younger
     * of the two it merged (the older one's own expiry is gone; see remember and held_count) */
    int32_t hold_lo;
    uint64_t gen_step; /* stage 1: the step (dlb_site.n_steps) of the last charger_general for it (see there) */
} charger_cold;

typedef struct {
    int64_t t_last, ok_since;
    int64_t hist_t[DLB_EV_HISTORY + 1];              /* bucket start times ... */
    int64_t hist_ev[DLB_EV_HISTORY + 1][DLB_PHASES]; /* ... and the smallest EV sums in them */
    int32_t n_hist;
    int32_t ma[DLB_PHASES];
    int32_t probe_owner;
    /* the step (n_steps, low 32 bits) and stage 1-4 position of the last release of probe_owner: -1 in
     * stage 1, k in charger k's stage 4 (see stop_probe; read by probe_claim alone) */
    uint32_t rel_step;
    int32_t rel_at;
    uint8_t seen, stale, recover_at_once;
} meter_state;

/* per-charger scratch of one step: 64 bytes, one cache line (the site's array of them is aligned to 64
 * bytes, see layout): admission, the fill, transition and top-up read a charger's record in admission
 * order, not in memory order, and a record over two lines cost each of them a second L2 access per
 * charger; so does every other record they read per charger (dlb_charger, charger_state): the
 * configuration and state these passes need are copied into this one (min_ma ... sw1, sp0). Currents in
 * mA fit int32 (DLB_MAX_CURRENT_MA); arithmetic on them is done in int64. */
typedef struct {
    /* ideal: the fill's share; stage 7 cuts it where a lane was overloaded before the grants and from then
     * on it is the charger's target (what the transition aims at, reserved up to it when cut) */
    int64_t ideal, value;
    int32_t m;          /* counted draw on each used phase: max(measured, set-points in effect) */
    int32_t drawn;      /* measured draw alone (max over the active conductors) */
    int32_t hi;         /* ceiling this step */
    /* sp: the transition's set-point, written only by transition() (a charger whose target is at or below
     * m gets its target, which stage 8 reads from ideal) */
    int32_t sp;
    uint32_t used;      /* bit p set: loads site phase p */
    /* sp0: charger_state.sp as stage 4 read it, written there for every charger (ceilings_kept, ceilings_fair
     * and ceilings_general): only remember() (stage 9) writes sp, after the top-up read its charger's copy */
    int32_t sp0;
    /* stages 5-9: configuration copied by dlb_init (outputs_cfg) and never written again: min_ma, max_ma,
     * the charger's circuit, step_ma | can_switch_phases << 31 (step_ma < 2^31), weight and sw1 (1 <<
     * phase_map[0] if it can switch phases, else 0). These passes then read no dlb_charger in the usual
     * cases */
    int32_t min_ma, max_ma;
    int32_t step_sw;
    uint16_t circ16;
    /* narrowed 0 or 1, n_used 0..3, kind KIND_*, hi_reason a dlb_reason (<= 16), tier TIER_* | TIER_WAITING
     * (<= 11): 8 bits each (see the _Static_asserts); started and frozen 0 or 1 */
    uint8_t narrowed;   /* counted on its measured conductors only */
    uint8_t n_used, kind, hi_reason, tier;
    uint8_t started, frozen;
    uint8_t weight, sw1;
} charger_scratch;
_Static_assert(sizeof(charger_scratch) == 64, "charger_scratch is one cache line");
_Static_assert(DLB_MAX_CIRCUITS <= 65536 && DLB_MAX_CURRENT_MA < INT32_MAX,
               "charger_scratch's circuit and currents fit its 16 and 32 bits");
_Static_assert(DLB_MAX_WEIGHT <= 255 && DLB_REASON_OVERLOAD <= 255 && (TIER_IDLE | TIER_WAITING) <= 255 &&
                   KIND_LOST <= 255 && DLB_PHASES <= 255,
               "charger_scratch's weight, hi_reason, tier, kind and n_used fit their 8 bits");

/* the admission order (stage 5): item is a charger; key is the sort fallback's copy of akey[item] (the
 * usual repair reads akey[] and leaves key as it was) */
typedef struct {
    uint64_t key;
    int64_t item;
} kpair;

/* Stage 4 (policy FAIR without ramp): what the admission key of a charger with demand and no reclaim state
 * needs kept between steps, one entry per charger, exact for any input:
 * - paused (sp == 0), eligible: while now < until and its delivered_mams == delivered (>= 0), its key is
 *   the one stage 4 wrote to akey[k] with the entry (nothing else writes akey[]: it is left as it is);
 * - paused, held off (delivered = -1): while now < until it is held off for the reason `key` (min_off_ms
 *   until off_since + min_off_ms, else the start cap until cap_until; time only grows), key KEY_REST in
 *   akey[k]; only whether it joins stage 9's list (wait_since == TNONE) is tested again;
 * - on (sp > 0): while now < until_on (and, tested every step, it draws at least sp - reclaim_margin_ma),
 *   its key is `key` (the must-stay, class and tier bits) | its policy key (delivered_mams / weight >> 20
 *   = delivered_mams / wq, wq = weight << 20 kept in `delivered`'s place: delivered_mams >= 0, weight > 0).
 * Its tier, hi and hi_reason are then as stage 4 wrote them with the entry (only stage 4 writes them).
 * Stage 4 sets `until` for an eligible paused charger with wait_since set (the time it starves; once
 * starving, for good) or a held-off one, `until_on` for an on one (the time its tier changes: must stay,
 * sticky, other), and clears both (0) on every other path, each time it does not take a kept key (a
 * paused entry is never read while on, nor an on one while paused: sp changes only in stage 9, and only
 * for an eligible charger, whose stage 4 took a path that left the other entry 0). Nothing else the key reads
 * changes meanwhile: every set-point lasts at least one step, so stage 4 sees a charger turned on or off;
 * on_since, off_since, cap_until and wait_since change in remember() only as the set-point turns on or
 * off, as wait_since leaves TNONE (never kept) or without demand, and in a session's start or end (a step
 * without demand lies between); reclaim state only on stage 4's general path; the rest are parameters. */
typedef struct {
    int64_t until;
    int64_t delivered; /* paused: delivered_mams then, or -1 held off; on: wq */
    uint64_t key;
    int64_t until_on;
} kept_key;

/* Per-circuit scratch of one step (lanes 0..2 phases, 3 power), in two arrays of whole cache lines (the
 * site aligns both to 64 bytes, see layout), each field beside those the same passes touch: every pass
 * over the circuits (81 of them at N = 1000, more than L1 holds between passes) then reads or writes one
 * to three lines per circuit instead of four to seven of one 664-byte record. The records are an odd
 * number of lines long (3 and 7): with a power of two (2 and 8) a pass touching one line of each circuit
 * fills only every second (every eighth) set of the 8-way L1 (simulated misses of the fill's flushes 75%
 * more).
 * circuit_acc: stages 1-3's sums on its first line (stage 1's per-charger adds: a block of 64 chargers adds
 * to every leaf, one line each, which then stay in L1 through the block), stage 9's on the other two. */
typedef struct {
    int64_t evsum[DLB_PHASES];  /* measured EV currents below the circuit (children's added in stage 3) */
    int64_t meas_d[DLB_PHASES]; /* counted draws m of the chargers with demand */
    int64_t fixed[DLB_PHASES];  /* fixed loads: lost chargers' reserves, conductors outside a counted set */
    /* stage 3: the children's base loads summed (zeroed in stage 1, added to before the circuit is reached:
     * children come after their parent), then the circuit's own base load (only stage 9 reads it) */
    int64_t base[DLB_PHASES];
    int64_t alloc[DLB_PHASES]; /* stage 9's allocated sums (a lost charger's held set-point from stage 1) */
    int64_t pad_;
    /* stages 8-9 (outputs), when the admitted chargers outnumber the circuits (by_mask): the set-points of
     * the admitted chargers of this circuit summed per used-phase mask (one add per charger instead of one
     * per phase), folded into alloc[] by the circuit outputs, which zero it again: all zero outside stages
     * 8-9 (dlb_init zeroes the buffer, stage 1 zeroes the lines before it, and a step without by_mask does
     * not touch it) */
    int64_t amask[8];
} circuit_acc;
_Static_assert(sizeof(circuit_acc) == 192 && offsetof(circuit_acc, amask) == 128, "circuit_acc is three cache lines");

/* the first_short / room_of memo entry of one used-phase mask (see first_short_walk, room_memo): gen and
 * amount side by side, one line for the usual lookup's test */
typedef struct {
    uint64_t gen;   /* valid while gen == site gen */
    int64_t amount; /* first_short: for this amount; room_of: the room */
} fail_memo;

/* circuit_scratch: seven lines, by pass. Line 0: stages 7-9's headroom (transition's pay, room_fill, the
 * outputs); line 1: run[] (admission, the fill's set-up and final take) with the fill's lane levels;
 * line 2: the fill's D and W; line 3: the fill's pending changes; lines 4-6: the memos. */
typedef struct {
    /* line 0. evl: stages 7-8's EV load per phase for the unbalance limit, max(set-point, counted draw).
     * What a charger cut in the transition still waits for is reserved in hr only: it is no EV load
     * (counted on an unused phase it would let another charger rise above the real load) */
    int64_t hr[DLB_LANES], evl[DLB_PHASES];
    uint32_t status;
    /* bit ln set: lane ln's budget (cap - base - fixed loads, run[]'s start) < 0 (stage 5's failure
     * reason: OVERLOAD, else SCARCITY; stage 3 sets it, nothing reads the budget itself) */
    uint32_t bneg;
    /* line 1 */
    int64_t run[DLB_LANES];
    int64_t lvl[DLB_LANES]; /* saturation level floor(D / W) of each growing lane (INF if W = 0) */
    /* line 2 */
    int64_t D[DLB_LANES], W[DLB_LANES];
    /* line 3. pW: fill: W changes of a batch of charger events not yet applied (lanes_pend / lanes_flush),
     * per lane (the power lane's without the circuit's hp factor); D changes by them times the level */
    int64_t pW[DLB_LANES];
    uint64_t pm_gen;
    int32_t key_lane;       /* id (circuit * 4 + lane) of the lane with the lowest level (site tlv[]) */
    uint32_t dirty;         /* fill: bit ln set = lane ln changed since the circuit was last keyed */
    uint32_t pmask;         /* fill: the used phases of the pending changes (PEND_MARK set while any) */
    int32_t pnext;          /* fill: the next pending circuit of the same depth */
    int64_t pad_;
    /* lines 4-5: first_short memo per used-phase mask (for chargers of this circuit): valid while run[]
     * is unchanged (site gen), for this amount, the answer in fail_lane. Stages 7-8 reuse them as
     * room_of's memo (see there); the site gen is bumped between, so no entry is read in the other's
     * sense */
    fail_memo fail[8];
    /* line 6 */
    int32_t fail_lane[8];
    int64_t pm[DLB_LANES];  /* min of run[] over the circuit's path, valid while pm_gen == site gen */
} circuit_scratch;
_Static_assert(sizeof(circuit_scratch) == 448 && offsetof(circuit_scratch, run) == 64 &&
                   offsetof(circuit_scratch, D) == 128 && offsetof(circuit_scratch, pW) == 192 &&
                   offsetof(circuit_scratch, fail) == 256 && offsetof(circuit_scratch, fail_lane) == 384,
               "circuit_scratch's fields on their lines");

#define ADM_ACC 8 /* stage 5: adm_acc entries per circuit (see dlb_site) */

struct dlb_site {
    const char *err_scope, *err_field, *err_problem;
    int32_t err_index;
    dlb_params p;
    int32_t nc, nk;
    int64_t last_now; /* TNONE before the first step */
    dlb_circuit *circ;
    dlb_charger *chg;
    int64_t *power_cap;
    int32_t *dfs, *range_start, *range_end;
    meter_state *ms;
    charger_state *ks;
    charger_cold *kcold;
    charger_scratch *kx;
    circuit_scratch *cx;
    circuit_acc *ca;
    int32_t *items, *tmp, *heap, *child_off, *child_list, *pre, *adm, *group;
    uint64_t *key;
    int32_t tsize, tdepth; /* fill: leaves of the tournament tree in heap[] (a power of two >= nc), log2 */
    /* flattened tree: path[c * DLB_MAX_DEPTH + i], i < plen[c], is circuit c's i-th ancestor (i = 0: c);
     * hp[c] = 1 if c has a power cap. Every per-charger walk up the tree reads these. */
    int32_t *path, *plen, *hp;
    int32_t *unbal_path;  /* 1 if a circuit on c's path (c included) has an unbalance limit */
    /* evo[c * 3 + p], on circuits with an unbalance limit: how much the counted draws m of this step's
     * demanding chargers on phase p below c exceed what dlb.h's rule is sure to count (a merged staircase
     * head, held_count); all zero unless evo_any (set by held_count, cleared with evo by circuits_in) */
    int64_t *evo;
    int32_t evo_any;
    uint32_t *over_own, *over_path; /* per step: lanes of c with initial headroom < 0; OR along c's path */
    /* fill: Q / weight per charger (levels are min * qw and hi * qw, exact), chargers presorted by
     * (min * qw, index) and by (max * qw, index) at init, the event lists of one fill, dirty circuits */
    int32_t *qw, *perm_start, *perm_end, *ev_start, *ev_end, *ev_other, *dirty;
    int32_t *dfs_pos, *glist; /* position of each charger in dfs[]; the fill's group in dfs order */
    int32_t *rank_start, *rank_end; /* position of each charger in perm_start[] and perm_end[] */
    int32_t radix[16];              /* counts of one rank_sort pass */
    uint64_t *bm;   /* fill: 3 bitmaps of n_words words (positions in perm_start, perm_end, dfs) */
    int32_t n_words;
    int32_t single_root;   /* fill: circuit 0 is the only root */
    int64_t top_rmin[9];   /* fill_take: the root's lowest run[] per set of used phases; [8] its power lane */
    /* fill_take: the top-up's candidates per pass and set of used phases (bucket pass * 8 + used): the
     * first group index (linked by items[]) and the smallest step */
    int32_t top_head[16];
    int64_t top_step[16];
    kpair *pairs, *pairs_tmp; /* the admission order (every charger, kept between steps) and the sort's buffer */
    int32_t n_dirty;
    int32_t n_todo; /* stage 9's remember() list in key[nk..] (see stage 4) */
    int32_t n_defer;  /* stages 1-4: chargers whose probe claim waits for the end of the pass, in adm[] */
    uint8_t in_stage4; /* stages 1-4: 1 while a block's stage 4 runs (see stop_probe) */
    int32_t n_sw;   /* stages 8-9: switch-up candidates in adm[0..n_sw) (a member: dlb_step's frame) */
    uint64_t gen;           /* bumped whenever run[] changes: validates pm and the first_short memo */
    int32_t prio_count[257];
    int32_t phead[DLB_MAX_DEPTH + 1]; /* fill: pending circuits per depth (linked by pnext), -1 = none */
    int32_t pdepth;                   /* deepest depth with a pending circuit, 0 = none */
    int64_t *tlv; /* fill: key level of each circuit in the tournament tree (nc + 1 entries, see there) */
    kept_key *kk4; /* stage 4: kept admission keys, one per charger (see kept_key) */
    /* stages 4-5: each charger's admission key this step (KEY_REST if not eligible), written by stage 4
     * alone and read by stage 5's sort; kept between steps (a paused charger's kept key stays in place) */
    uint64_t *akey;
    uint64_t n_steps; /* stage 1: steps run (past dlb_step's argument checks), for charger_general's t_last */
    /* stage 5 (admit_batch, admit_flush): adm_acc[c * ADM_ACC + i], the minima of the current batch's
     * chargers below circuit c not yet applied to its run[]: summed per used-phase mask i (a child's sums
     * per lane on the masks of one phase; i = 0 unused, the power lane's sum is the phases', see flush_one);
     * all zero outside a batch (an array of its own: a larger circuit_scratch costs every pass over it an instruction per
     * circuit) */
    int64_t *adm_acc;
    int64_t adm_low[2]; /* stage 5 (admit_quick): lower bounds of run[] below the root (phase, power lanes) */
    int32_t adm_n;      /* stage 5 (admit_quick): chargers admitted so far (in adm[]) */
    int32_t adm_items;  /* stage 5 (admit): the eligible chargers, pairs[0..adm_items) */
    int32_t adm_failed; /* stage 5 (admit_fails_root): its answer for the charger where it stopped */
    int32_t adm_rsn[DLB_LANES]; /* stage 5 (admit_fails_root): a failure's reason per root lane */
    int64_t adm_bsum[8];        /* stage 5 (admit_batch): its minima so far per used-phase mask */
    int32_t adm_skip, adm_back; /* stage 5 (admit): steps admit_quick still waits, and the wait after an undo */
    int32_t adm_prev;           /* stage 5 (admit): chargers admitted in the last step */
    dlb_charger_output *adm_out; /* stage 5 (admit): this step's outputs and time, for admit_seq */
    int64_t adm_now;
    int32_t n_live; /* stage 6 (fill): started chargers of the group not frozen (a member: the fill's frame) */
    int32_t n_fz;   /* stage 6 (fill): how many started chargers the last freeze_loop froze (listed in tmp[]) */
    /* stage 5 (admit_fails_root, admit_fails_wide): per used-phase mask u, the outputs of a charger failing
     * at the root on the lowest lane of m3 & u (m3 = adm_m3 the root's phase lanes short; read only where
     * m3 & u != 0; adm_m3 reset by each admit_fails_root call, as adm_rsn may change): adm_rc[u] the
     * bytes of reason and limit_circuit (adjacent in dlb_charger_output), adm_ll[u] limit_lane */
    uint64_t adm_rc[8];
    int32_t adm_ll[8];
    uint32_t adm_m3; /* the m3 adm_rc and adm_ll are for (8: none) */
    /* stage 5 (admit_quick): a summary of the configuration, found by dlb_init (admit_cfg; nothing changes
     * the configuration afterwards): bit 0 always set, bit 1 if a charger can switch phases, bit 2 if
     * every charger has the same min_ma. (Stage 5 reads each charger's circuit, min_ma and phase switch
     * from charger_scratch's copy, a line it reads anyway.) */
    uint32_t adm_cfg;
    int64_t adm_wa;  /* stage 5 (admit_fails_root): the a and ms of admit_fails_wide's call (adm_failed -3) */
    uint32_t adm_ms;
    /* stage 6 (start_batch), found by dlb_init (fill_cfg; START levels min * Q / w never change): per
     * position p of perm_start, the first position after p whose START level differs (nk if none), so
     * that a batch takes the run of its level without computing each charger's level (nk entries) */
    int32_t *start_run;
    /* stage 6 (tree_update): 1 if only the tournament tree's root is current (its other nodes stale);
     * 0 at each fill's start (every tlv[] INF: any node is then as good as any other, see tree_init) */
    int32_t tree_stale;
    /* stage 5 (admit_quick): 1 if adm_low holds its lower bounds, 0 if they are not found yet this step (then
     * whoever needs them first finds them from run[] as it is: admit_low, or a large admit_flush) */
    int32_t adm_lowok;
};

/* ------------------------------------------------------------------------------------------------ */
/* small helpers */

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* floor division (C division truncates toward zero; the specification floors) */
static int64_t fdiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) {
        q--;
    }
    return q;
}

static int64_t floor_grid(int64_t v, int64_t step) { return fdiv(v, step) * step; }
static int64_t ceil_grid(int64_t v, int64_t step) { return -fdiv(-v, step) * step; }

static int32_t clamp32(int64_t v)
{
    if (v > INT32_MAX) {
        return INT32_MAX;
    }
    if (v < INT32_MIN) {
        return INT32_MIN;
    }
    return (int32_t)v;
}

static size_t align8(size_t n) { return (n + 7u) & ~(size_t)7u; }

static int is_demanding(int32_t st)
{
    return st == DLB_STATE_CONNECTED_IDLE || st == DLB_STATE_CHARGING || st == DLB_STATE_EV_SUSPENDED;
}

/* Sort items[0..n) by (key[item], item): a bottom-up merge sort, O(N log N) (the fill's events). */
static int item_less(const uint64_t *key, int32_t a, int32_t b)
{
    return key[a] < key[b] || (key[a] == key[b] && a < b);
}

static void merge_sort(int32_t *a, int32_t *tmp, size_t n, const uint64_t *key)
{
    int32_t *src = a, *dst = tmp;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) {
                dst[o++] = item_less(key, src[j], src[i]) ? src[j++] : src[i++];
            }
            while (i < mid) {
                dst[o++] = src[i++];
            }
            while (j < hi) {
                dst[o++] = src[j++];
            }
        }
        int32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) {
        memcpy(a, src, n * sizeof(int32_t));
    }
}

/* The admission sort: (key, item) pairs stored together, sorted by key then index. Insertion sort
 * repairs last step's nearly sorted order in O(N + moves); past a budget of moves it switches to
 * bulk_sort (extract the pairs out of place, merge sort them, merge them back), O(N + m log m) for m
 * extracted. The result is the unique order, whichever path ran. */

/* the key of a charger that is not eligible this step: above every admission key (< 2^63), so the
 * eligible come first (the rest follow in any order: see sort_pairs) */
#define KEY_REST UINT64_MAX

/* (xk, xi) before (yk, yi) in the admission order (items are distinct and >= 0). As one 128-bit
 * comparison where the compiler has the type: a compare and a subtract with borrow, one branch. */
#if defined(__SIZEOF_INT128__)
__extension__ typedef unsigned __int128 dlb_u128;
static inline int kv_less(uint64_t xk, int64_t xi, uint64_t yk, int64_t yi)
{
    return (((dlb_u128)xk << 64) | (uint64_t)xi) < (((dlb_u128)yk << 64) | (uint64_t)yi);
}
#else
static inline int kv_less(uint64_t xk, int64_t xi, uint64_t yk, int64_t yi)
{
    return xk < yk || (xk == yk && xi < yi);
}
#endif

/* (key, item) order of two pairs (the fallback's, on the pairs' own keys) */
static inline int pair_less(const kpair *a, const kpair *b)
{
    return kv_less(a->key, a->item, b->key, b->item);
}

/* d[0..k) = s[0..k) one pair at a time (bulk_sort's copies are mostly short: no call) */
static inline void pair_copy(kpair *d, const kpair *s, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        d[i] = s[i];
    }
}

/* the first j in s[0..len) (sorted) with x before s[j], len if none: a binary search whose compare picks
 * the half by a conditional move (its outcomes are what a predictor cannot learn) */
static inline size_t pair_upper(const kpair *s, size_t len, const kpair *x)
{
    size_t lo = 0;
    while (len > 0) {
        const size_t half = len / 2;
        const int t = !pair_less(x, &s[lo + half]);
        lo = t ? lo + half + 1 : lo;
        len = t ? len - half - 1 : half;
    }
    return lo;
}

/* (*x, *y) = (min, max) of the two by (key, item), without branches (a sorting network's element) */
static inline void pair_cswap(kpair *x, kpair *y)
{
    const uint64_t pk = x->key, qk = y->key;
    const int64_t pi = x->item, qi = y->item;
    const int t = kv_less(qk, qi, pk, pi);
    x->key = t ? qk : pk;
    x->item = t ? qi : pi;
    y->key = t ? pk : qk;
    y->item = t ? pi : qi;
}

/* Merge the sorted src[lo..mid) and src[mid..hi) into dst[lo..hi), src[mid] before src[mid - 1] (not
 * already in order). Bulk_sort's runs often meet in blocks (a group whose keys changed alike): from 8
 * pairs on, the left's pairs before the right's first and the right's pairs after the left's last are
 * found by binary search and copied as blocks; the middle is merged without branches (the next pair is
 * a conditional move of the two heads: where runs interleave finely, a branch would miss every other
 * pair). Both heads are nonempty at the loop's start (the right's first is before the left's last). */
DLB_NOINLINE static void pair_merge(const kpair *src, kpair *dst, size_t lo, size_t mid, size_t hi)
{
    const kpair *l = src + lo, *r = src + mid, *const le = src + mid;
    const kpair *re = src + hi;
    kpair *o = dst + lo;
    if (hi - lo >= 8) {
        const size_t pl = pair_upper(l, mid - lo, r);
        const size_t pr = pair_upper(r, hi - mid, le - 1);
        pair_copy(o, l, pl);
        pair_copy(dst + mid + pr, r + pr, hi - mid - pr);
        o += pl;
        l += pl;
        re = r + pr;
    }
    for (;;) {
        const int t = pair_less(r, l);
        *o++ = t ? *r : *l;
        r += t;
        l += !t;
        if (l == le || r == re) {
            break;
        }
    }
    pair_copy(o, l, (size_t)(le - l));
    o += le - l;
    pair_copy(o, r, (size_t)(re - r));
}

/* q[0..4) sorted by a network of 5 compare-exchanges, without branches (out of pair_msort's loop, whose
 * frame is on dlb_step's deepest stack chain) */
DLB_NOINLINE static void pair_sort4(kpair *q)
{
    pair_cswap(&q[0], &q[1]);
    pair_cswap(&q[2], &q[3]);
    pair_cswap(&q[0], &q[2]);
    pair_cswap(&q[1], &q[3]);
    pair_cswap(&q[1], &q[2]);
}

/* Sort a[0..n) by the pairs' own keys (bulk_sort's extracted pairs), tmp[0..n) the buffer; returns the
 * one that holds the result. Blocks of 4 are sorted by a network of 5 compare-exchanges without
 * branches (skipped if already in order), then merged bottom-up; two neighbours already in order are
 * copied (one memcpy), others merged by pair_merge. O(n log n). */
DLB_NOINLINE static kpair *pair_msort(kpair *a, kpair *tmp, size_t n)
{
    size_t lo = 0;
    for (; lo + 4 <= n; lo += 4) {
        kpair *q = a + lo;
        if (!pair_less(&q[0], &q[1]) || !pair_less(&q[1], &q[2]) || !pair_less(&q[2], &q[3])) {
            pair_sort4(q);
        }
    }
    for (size_t j = lo + 1; j < n; j++) { /* the last < 4: insertion */
        for (size_t k = j; k > lo && pair_less(&a[k], &a[k - 1]); k--) {
            const kpair t = a[k];
            a[k] = a[k - 1];
            a[k - 1] = t;
        }
    }
    kpair *src = a, *dst = tmp;
    for (size_t width = 4; width < n; width *= 2) {
        for (lo = 0; lo < n; lo += 2 * width) {
            const size_t mid = lo + width < n ? lo + width : n;
            const size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            if (mid == hi || pair_less(&src[mid - 1], &src[mid])) {
                memcpy(dst + lo, src + lo, (hi - lo) * sizeof(kpair));
            } else {
                pair_merge(src, dst, lo, mid, hi);
            }
        }
        kpair *t = src;
        src = dst;
        dst = t;
    }
    return src;
}

/* the first j in a[0..len) (sorted by (key[item], item)) with x before a[j], len if none: pair_upper on
 * this step's keys (a[]'s own key fields may be last step's) */
static inline size_t kept_upper(const kpair *a, size_t len, const uint64_t *key, const kpair *x)
{
    size_t lo = 0;
    while (len > 0) {
        const size_t half = len / 2;
        const int64_t y = a[lo + half].item;
        const int t = !kv_less(x->key, x->item, key[y], y);
        lo = t ? lo + half + 1 : lo;
        len = t ? len - half - 1 : half;
    }
    return lo;
}

/* bulk_sort, sort_pairs' fallback (a step that moved many chargers at once: a tier or key change of a whole group,
 * or a group of held-off chargers eligible again), from a[i] on: a[0..i) is sorted by (key[item], item)
 * and holds no KEY_REST pair (else i = 0: a[] in any order). One pass over a[i..n) keeps an ascending run
 * in a[0..w) (w = i first); a pair below the run's last is moved out together with that last (the
 * greedy of "remove the fewest pairs to leave a[] sorted", at most twice the fewest): the pair to
 * tmp[]'s front, the last to the back of tmp[0..m) (front + back + w <= the eligible seen <= m), each
 * with its key (key[item]) copied into the pair; a KEY_REST pair goes to tmp[m..n) (exactly n - m of
 * them), then back to a[m..n), where any order will do. The e moved (front, then the back read upwards:
 * lasts leave the run from its top down) are sorted by pair_msort, a[w..m) its buffer, and merged back
 * from the end, the run's side compared on key[] (its key fields before a[i] are last step's): the run's
 * pairs above all of them move up as one block and those below the first stay, so only the middle is
 * merged pair by pair. O(n - i + e log e). Three calls from sort_pairs, so that each frame sits on top
 * of sort_pairs' alone (dlb_step's chain, see dlb.h): bulk_split (the pass; returns w), pair_msort and
 * bulk_merge. */
DLB_NOINLINE static size_t bulk_split(kpair *a, kpair *tmp, size_t n, size_t m, const uint64_t *key, size_t i)
{
    if (i > 0 && key[a[i - 1].item] == KEY_REST) {
        i = 0;
    }
    size_t w = i, mx = 0, ml = 0, nr = m;
    int64_t li = i > 0 ? a[i - 1].item : 0; /* the run's last, a[w - 1], in registers */
    uint64_t lk = i > 0 ? key[li] : 0;
    for (size_t j = i; j < n; j++) {
        const int64_t it = a[j].item;
        const uint64_t k = key[it];
        if (k == KEY_REST) {
            tmp[nr++] = a[j];
            continue;
        }
        if (w == 0 || kv_less(lk, li, k, it)) {
            a[w].key = k;
            a[w].item = it;
            w++;
            lk = k;
            li = it;
        } else {
            tmp[mx].key = k;
            tmp[mx].item = it;
            mx++;
            tmp[m - ++ml] = (kpair){lk, li};
            if (--w > 0) {
                li = a[w - 1].item;
                lk = key[li];
            }
        }
    }
    memcpy(a + m, tmp + m, (n - m) * sizeof(kpair));
    memmove(tmp + mx, tmp + (m - ml), ml * sizeof(kpair));
    return w;
}

/* bulk_sort's merge back: the e = m - w moved pairs, sorted in s[] (tmp or a + w), into the run a[0..w) */
DLB_NOINLINE static void bulk_merge(kpair *a, kpair *tmp, const kpair *s, size_t w, size_t m, const uint64_t *key)
{
    const size_t e = m - w;
    if (s != tmp) { /* the merge back writes a[w..m) */
        memcpy(tmp, s, e * sizeof(kpair));
        s = tmp;
    }
    const size_t top = kept_upper(a, w, key, &s[e - 1]);
    memmove(a + top + e, a + top, (w - top) * sizeof(kpair));
    const size_t bot = kept_upper(a, top, key, &s[0]);
    size_t i1 = top, i2 = e, o = top + e;
    while (i2 > 0) {
        if (i1 > bot) {
            const int64_t y = a[i1 - 1].item;
            if (kv_less(s[i2 - 1].key, s[i2 - 1].item, key[y], y)) {
                a[--o] = a[--i1];
                continue;
            }
        }
        a[--o] = s[--i2];
    }
}

/* sort_pairs inserts a pair this close to its place by shifting the pairs in between one at a time */
#define SORT_NEAR 16

/* sort_pairs' far insertion, out of its loop (which then keeps its few values in registers): x = a[i]
 * goes before a[b], b = i - SORT_NEAR or 0, in the sorted a[0..i) (ordered by (key[item], item)). A
 * binary search of a[0..b] without branches (whose outcomes a predictor cannot learn) finds its place;
 * the pairs after it that go to the same place (a run of chargers whose keys changed alike: each above
 * the last taken and below the pair found above the place) move with it in one block. Returns the
 * position of the last pair moved (a[0..that] sorted), or n if it ran out of budget (*budget: pairs
 * passed, plus 64 a move for the search and the call) and moved nothing (sort_pairs then finishes
 * with bulk_sort). */
DLB_NOINLINE static size_t sort_far(kpair *a, kpair *tmp, size_t n, const uint64_t *key, size_t i, size_t b,
                                    size_t *budget)
{
    const int64_t k = a[i].item;
    const uint64_t kk = key[k];
    size_t hi = 0, len = b + 1; /* x's place: the first of a[hi..hi + len) above x (a[b] is) */
    while (len > 1) {              /* without branches: the compare picks the half (a conditional move) */
        const size_t half = len / 2;
        const kpair *m = &a[hi + half - 1];
        hi = kv_less(key[m->item], m->item, kk, k) ? hi + half : hi;
        len -= half;
    }
    const int64_t hx = a[hi].item;
    const uint64_t hk = key[hx];
    size_t r = 1;
    uint64_t ek = kk;
    int64_t ex = k;
    while (i + r < n) {
        const int64_t y = a[i + r].item;
        const uint64_t yk = key[y];
        if (!(kv_less(ek, ex, yk, y) && kv_less(yk, y, hk, hx))) {
            break;
        }
        ek = yk;
        ex = y;
        r++;
    }
    const size_t d = i - hi;
    if (d + 64u >= *budget) { /* far from sorted: bulk_sort from here */
        return n;
    }
    *budget -= d + 64u;
    if (r == 1) {
        const kpair x = a[i];
        memmove(a + hi + 1, a + hi, d * sizeof(kpair));
        a[hi] = x;
    } else {
        memcpy(tmp, a + i, r * sizeof(kpair));
        memmove(a + hi + r, a + hi, d * sizeof(kpair));
        memcpy(a + hi, tmp, r * sizeof(kpair));
    }
    return i + r - 1;
}

/* sort_pairs' scan: passes p[0], p[1], ... (p > a, p[-1] the last of a sorted prefix) while each goes
 * after the one before it by (key[item], item); returns the first that does not, or end. Four a round while
 * p < end4 (end - 3, or a if n < 4), each compared with the one before it in registers (one 128-bit
 * comparison each), then one at a time. */
static DLB_INLINE kpair *sort_scan(kpair *p, kpair *const end4, kpair *const end, const uint64_t *key)
{
    int64_t li = p[-1].item;
    uint64_t lk = key[li];
    while (p < end4) { /* p + 3 < end */
        const int64_t k0 = p[0].item, k1 = p[1].item, k2 = p[2].item, k3 = p[3].item;
        const uint64_t kk0 = key[k0];
        if (!kv_less(lk, li, kk0, k0)) {
            return p;
        }
        const uint64_t kk1 = key[k1];
        if (!kv_less(kk0, k0, kk1, k1)) {
            return p + 1;
        }
        const uint64_t kk2 = key[k2];
        if (!kv_less(kk1, k1, kk2, k2)) {
            return p + 2;
        }
        const uint64_t kk3 = key[k3];
        if (!kv_less(kk2, k2, kk3, k3)) {
            return p + 3;
        }
        lk = kk3;
        li = k3;
        p += 4;
    }
    for (; p < end; p++) {
        const int64_t k = p->item;
        const uint64_t kk = key[k];
        if (!kv_less(lk, li, kk, k)) {
            return p;
        }
        lk = kk;
        li = k;
    }
    return end;
}

/* sort_pairs' scan past the eligible (p >= a + m, see sort_pairs): the sorted prefix ends with KEY_REST
 * pairs, and any order among them will do; passes those (a key test each, no item compare, four a round
 * while p < end4) and returns the first eligible one (it goes before p[-1]), or end */
static DLB_INLINE kpair *sort_scan_rest(kpair *p, kpair *const end4, kpair *const end, const uint64_t *key)
{
    for (; p < end4; p += 4) {
        if (key[p[0].item] != KEY_REST) {
            return p;
        }
        if (key[p[1].item] != KEY_REST) {
            return p + 1;
        }
        if (key[p[2].item] != KEY_REST) {
            return p + 2;
        }
        if (key[p[3].item] != KEY_REST) {
            return p + 3;
        }
    }
    for (; p < end; p++) {
        if (key[p->item] != KEY_REST) {
            return p;
        }
    }
    return end;
}

/* Stage 5's order: a[0..n) holds every charger in last step's order; bring the m eligible (key below
 * KEY_REST, stage 4's count) to a[0..m) sorted by (key[item], item) with this step's keys. Only a[0..m)
 * is read (admit): the others, KEY_REST each, may end in any order. One pass repairs: a[0..i) is sorted
 * when a[i] is reached (up to the order among KEY_REST pairs), and a[i] is inserted into it if it does
 * not go last (sort_scan passes those that do; the pairs' own key fields are left alone, see kpair).
 * Within SORT_NEAR places (most repairs: a charger whose key changed a little) the pairs above it shift
 * up one by one as they are compared (no search, no call); farther, sort_far. Once far moves would cost
 * more than 2n + 64 (pairs passed, 64 a move), bulk_sort finishes from a[i], O(N + e log e) for e pairs
 * out of place. Measured on the bench's dumped orders against other budgets (n, 4n, 8n; 0 or 32 a
 * move): a smaller one sends steps with a few long moves (cheap memmoves) to the fallback's pass, a
 * larger one spends it on the rotation steps (hundreds of chargers moving at once) before the fallback.
 * The pass stops once i >= m and a[m - 1] is eligible:
 * the eligible go first in a sorted a[0..i), so a[0..m) holds all m of them, in order. Until then, past
 * a[m) the sorted prefix ends with a KEY_REST pair (a[m - 1] is one), which every eligible pair goes
 * before and every KEY_REST pair may follow: sort_scan_rest looks for the eligible only. Repairs and
 * sort_far's search see the KEY_REST pairs above every eligible one, whatever their order. The result's
 * a[0..m) is the unique order, whichever path ran. */
DLB_NOINLINE static void sort_pairs(kpair *a, kpair *tmp, size_t n, size_t m, const uint64_t *key)
{
    size_t budget = 2u * n + 64u;
    if (m == 0) {
        return;
    }
    kpair *p = a + 1, *const end = a + n, *const end4 = a + (n > 3 ? n - 3 : 0);
    kpair *const mid = a + m, *const mid4 = a + (m > 3 ? m - 3 : 0);
    for (;;) {
        if (p < mid) {
            p = sort_scan(p, mid4, mid, key);
        }
        if (p >= mid) {
            if (key[mid[-1].item] != KEY_REST) {
                return;
            }
            p = sort_scan_rest(p, end4, end, key);
            if (p == end) {
                return; /* not reached: an eligible pair is past a[m) */
            }
        }
        /* x = *p goes before p[-1]; the last of a[0..p] is then *p */
        const kpair x = {key[p->item], p->item};
        const size_t i = (size_t)(p - a);
        const size_t b = i > SORT_NEAR ? i - SORT_NEAR : 0;
        if (kv_less(key[a[b].item], a[b].item, x.key, x.item)) { /* a[b] < x < a[i - 1]: a near place, b < j < i */
            kpair *q = p - 1;
            p[0] = q[0];
            while (kv_less(x.key, x.item, key[q[-1].item], q[-1].item)) {
                q[0] = q[-1];
                q--;
            }
            *q = x;
            p++;
        } else {
            const size_t last = sort_far(a, tmp, n, key, i, b, &budget);
            if (last == n) { /* bulk_sort, in three calls (each frame on top of this one only) */
                const size_t w = bulk_split(a, tmp, n, m, key, i);
                if (w < m) {
                    bulk_merge(a, tmp, pair_msort(tmp, a + w, m - w), w, m, key);
                }
                return;
            }
            p = a + last + 1;
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* Tournament tree over circuits, each keyed by its lowest lane (saturation level, lane id). The
 * minimum over circuits of (level, lane id) is the minimum over all lanes, which is the order the
 * reference's per-lane heap pops. Circuit c is leaf tsize + c of heap[] (1-based, heap[i] the winner of
 * heap[2i] and heap[2i+1]); tlv[c] is its key level, INF if no lane grows (and tlv[nc] = INF for the
 * padding leaves). Lane ids of different circuits order as the circuits do, and a left subtree holds
 * lower circuits than its sibling, so "the right one only if strictly lower" breaks ties by lane id.
 * A re-key is one walk to the root (no swaps, no positions to keep); a batch touching many circuits
 * recomputes only the nodes above real circuits, level by level (O(C)). */

static inline int32_t tree_win(const int64_t *lv, int32_t a, int32_t b) { return lv[b] < lv[a] ? b : a; }

/* Set up at init (heap[] is the init's traversal stack before). Between fills the nodes keep their
 * winners: a fill resets every tlv[] to INF, and a node holding any circuit of its subtree with an INF
 * level is then as good as any other (an INF root means nothing grows); a node above a circuit whose
 * level becomes finite is recomputed on the way up from it before the root is next read. */
static void tree_init(dlb_site *s)
{
    int32_t tsize = 1, tdepth = 0;
    while (tsize < s->nc) {
        tsize *= 2;
        tdepth++;
    }
    s->tsize = tsize;
    s->tdepth = tdepth;
    int32_t roots = 0;
    for (int32_t c = 0; c < s->nc; c++) {
        roots += s->circ[c].parent == DLB_NONE;
    }
    s->single_root = roots == 1;
    for (int32_t c = 0; c <= s->nc; c++) {
        s->tlv[c] = INF;
    }
    for (int32_t i = 1; i < tsize; i++) {
        s->heap[i] = s->nc; /* padding leaf nc: tlv[nc] = INF always */
    }
    for (int32_t c = 0; c < tsize; c++) {
        s->heap[tsize + c] = c < s->nc ? c : s->nc;
    }
}

/* recompute the nodes above leaf c */
static void tree_up(dlb_site *s, int32_t c)
{
    int32_t *const t = s->heap;
    const int64_t *const lv = s->tlv;
    for (int32_t i = (s->tsize + c) >> 1; i >= 1; i >>= 1) {
        t[i] = tree_win(lv, t[2 * i], t[2 * i + 1]);
    }
}

/* recompute every node above a real circuit, bottom-up (nodes above padding alone stay padding) */
static void tree_rebuild(dlb_site *s)
{
    int32_t *const t = s->heap;
    const int64_t *const lv = s->tlv;
    int32_t lo = s->tsize, hi = s->tsize + s->nc - 1; /* leaves of real circuits */
    if (lo > 1) { /* the lowest nodes: leaf tsize + c holds c (c <= nc: a padding leaf holds nc) */
        lo >>= 1;
        hi >>= 1;
        for (int32_t i = lo, c = 0; i <= hi; i++, c += 2) {
            t[i] = lv[c + 1] < lv[c] ? c + 1 : c;
        }
    }
    while (lo > 1) {
        lo >>= 1;
        hi >>= 1;
        for (int32_t i = lo; i <= hi; i++) {
            t[i] = tree_win(lv, t[2 * i], t[2 * i + 1]);
        }
    }
}

/* the lowest cached lane level of circuit c and its lane id (the first such lane); INF if every level
 * is INF (no lane grows); written out, as gcc -O2 keeps a 4-trip loop as a loop */
static inline int64_t circ_best(const circuit_scratch *cs, int32_t c, int32_t *lane_out)
{
    int64_t best = cs->lvl[0];
    int32_t ln = 0;
    if (cs->lvl[1] < best) {
        best = cs->lvl[1];
        ln = 1;
    }
    if (cs->lvl[2] < best) {
        best = cs->lvl[2];
        ln = 2;
    }
    if (cs->lvl[3] < best) {
        best = cs->lvl[3];
        ln = 3;
    }
    *lane_out = c * 4 + ln;
    return best;
}

/* ------------------------------------------------------------------------------------------------ */
/* lanes of a charger: for every circuit on its path, the used phases (factor 1), then the power lane
 * (factor n_used) where the circuit has a power cap. Callers iterate with these macros. */

#define FOR_PATH(s, k, c) for (int32_t c = (s)->chg[k].circuit; c != DLB_NONE; c = (s)->circ[c].parent)

static int has_power(const dlb_site *s, int32_t c) { return s->hp[c] != 0; }

/* Lanes without a cap (the power lane of a circuit without power_limit_w) hold INF in budget, run and
 * hr; the walks below subtract from and compare with them without a branch: INF minus one step's
 * grants stays far above any current, so such a lane never binds, exactly as if it were skipped. */

/* the ancestors of charger k's circuit (itself first), and how many */
static const int32_t *path_of(const dlb_site *s, int32_t k, int32_t *depth)
{
    int32_t leaf = s->kx[k].circ16;
    *depth = s->plen[leaf];
    return s->path + (size_t)leaf * DLB_MAX_DEPTH;
}

/* take amount from run[] on every circuit of a path: on each used phase lane, and amount_n (amount
 * times the phases used) on the power lane */
static inline void path_subtract(dlb_site *s, const int32_t *path, int32_t depth, uint32_t used, int64_t amount,
                                 int64_t amount_n)
{
    circuit_scratch *const cx = s->cx;
    const int64_t a0 = amount * (int64_t)(used & 1u), a1 = amount * (int64_t)((used >> 1) & 1u),
                  a2 = amount * (int64_t)((used >> 2) & 1u);
    for (int32_t i = 0; i < depth; i++) {
        int64_t *run = cx[path[i]].run;
        run[0] -= a0;
        run[1] -= a1;
        run[2] -= a2;
        run[DLB_LANE_POWER] -= amount_n;
    }
}

/* per used-phase mask, -1 on each phase lane it uses, else 0 (and-ed with an amount: per-lane amounts) */
static const int64_t lane_mask[8][3] = {{0, 0, 0},  {-1, 0, 0},  {0, -1, 0},  {-1, -1, 0},
                                        {0, 0, -1}, {-1, 0, -1}, {0, -1, -1}, {-1, -1, -1}};

/* index of the lowest set bit of a 4-bit lane mask (lane order within a circuit: L1, L2, L3, power) */
static const int8_t lowest_lane[16] = {-1, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0};

/* first_short without the memo: walk the path, remember the answer in the leaf circuit */
DLB_INLINE static int32_t first_short_walk(dlb_site *s, int32_t k, uint32_t used, int32_t n, int64_t amount)
{
    circuit_scratch *const cx = s->cx;
    circuit_scratch *leaf = &cx[s->chg[k].circuit];
    int32_t depth;
    const int32_t *path = path_of(s, k, &depth);
    const int64_t amount_n = amount * n;
    int32_t lane = -1;
    for (int32_t i = 0; i < depth; i++) {
        const int64_t *run = cx[path[i]].run;
        uint32_t shortm = ((uint32_t)(run[0] < amount) | ((uint32_t)(run[1] < amount) << 1) |
                           ((uint32_t)(run[2] < amount) << 2)) & used;
        shortm |= (uint32_t)(run[DLB_LANE_POWER] < amount_n) << 3;
        if (shortm != 0) {
            lane = path[i] * 4 + lowest_lane[shortm];
            break;
        }
    }
    leaf->fail[used].gen = s->gen;
    leaf->fail[used].amount = amount;
    leaf->fail_lane[used] = lane;
    return lane;
}

/* first lane on charger k's path where run[] cannot take amount (per factor); -1 if all can */
static inline int32_t first_short(dlb_site *s, int32_t k, uint32_t used, int32_t n, int64_t amount)
{
    /* Under scarcity most chargers fail, and nothing changes run[] between failures: chargers of one
     * circuit with the same phases and amount get the same answer, remembered until run[] changes. */
    circuit_scratch *leaf = &s->cx[s->chg[k].circuit];
    if (leaf->fail[used].gen == s->gen && leaf->fail[used].amount == amount) {
        return leaf->fail_lane[used];
    }
    return first_short_walk(s, k, used, n, amount); /* five arguments: all in registers */
}

/* the first short lane (circuit * 4 + lane) of circuit c's run[] for the amount, -1 if none */
static inline int32_t short_lane(const dlb_site *s, int32_t c, uint32_t used, int64_t amount, int64_t amount_n)
{
    const int64_t *run = s->cx[c].run;
    const uint32_t shortm = (((uint32_t)(run[0] < amount) | ((uint32_t)(run[1] < amount) << 1) |
                              ((uint32_t)(run[2] < amount) << 2)) & used) |
                            ((uint32_t)(run[DLB_LANE_POWER] < amount_n) << 3);
    return shortm != 0 ? c * 4 + lowest_lane[shortm] : -1;
}

/* admit_take's miss: the amount does not fit on leaf circuit c's path; the circuits at path positions
 * below `taken` already gave it and get it back (run[] as before: the site gen stands). The answer, the
 * first short lane from the leaf up, is remembered as first_short_walk would. Out of line: the fit's
 * loop keeps its registers. */
DLB_NOINLINE static int32_t admit_short(dlb_site *s, int32_t c, int32_t taken, uint32_t used, int64_t amount,
                                        int64_t amount_n)
{
    const int32_t *const path = s->path + (size_t)c * DLB_MAX_DEPTH;
    path_subtract(s, path, taken, used, -amount, -amount_n);
    int32_t lane = -1;
    for (int32_t i = 0; lane < 0; i++) { /* some circuit of the path is short */
        lane = short_lane(s, path[i], used, amount, amount_n);
    }
    circuit_scratch *leaf = &s->cx[c];
    leaf->fail[used].gen = s->gen;
    leaf->fail[used].amount = amount;
    leaf->fail_lane[used] = lane;
    return lane;
}

/* admit_take's usual miss (it returned -1: a lane is short, nothing taken): the first short lane from
 * the leaf up, remembered (first_short_walk for circuit c) */
DLB_NOINLINE static int32_t admit_miss(dlb_site *s, int32_t c, uint32_t used, int64_t amount, int64_t amount_n)
{
    circuit_scratch *const cx = s->cx;
    const int32_t *const path = s->path + (size_t)c * DLB_MAX_DEPTH;
    int32_t lane = -1;
    for (int32_t i = 0; lane < 0; i++) { /* the top circuit is short */
        lane = short_lane(s, path[i], used, amount, amount_n);
    }
    cx[c].fail[used].gen = s->gen;
    cx[c].fail[used].amount = amount;
    cx[c].fail_lane[used] = lane;
    return lane;
}

/* Admission's fit test and take in one walk up leaf circuit c's path: the top circuit first (where the
 * usual miss is), then each circuit's run[] minus the amount (amount_n on the power lane) is stored as
 * soon as no lane it tests goes below 0 (r - a < 0 is r < a, first_short's test), so a fit costs one
 * pass. Written out for the usual phase sets (all three, or one), whose loops keep few values live, and
 * without calls (the misses are the caller's: see admit_short and admit_miss). Returns -2 if the amount
 * fitted and was taken (the gen bumped, as run_take), -1 if a lane is short and nothing was taken, else
 * the path position of the first short circuit (those below it have given the amount). */
DLB_INLINE static int32_t admit_take(dlb_site *s, int32_t c, uint32_t used, int64_t amount, int64_t amount_n)
{
    circuit_scratch *const cx = s->cx;
    const int32_t *const path = s->path + (size_t)c * DLB_MAX_DEPTH;
    const int32_t top = s->plen[c] - 1;
    int64_t *const rt = cx[path[top]].run;
    if (used == 7u) {
        if (((rt[0] - amount) | (rt[1] - amount) | (rt[2] - amount) | (rt[DLB_LANE_POWER] - amount_n)) < 0) {
            return -1;
        }
        for (int32_t i = 0; i < top; i++) {
            int64_t *run = cx[path[i]].run;
            const int64_t t0 = run[0] - amount, t1 = run[1] - amount, t2 = run[2] - amount,
                          tp = run[DLB_LANE_POWER] - amount_n;
            if ((t0 | t1 | t2 | tp) < 0) {
                return i;
            }
            run[0] = t0;
            run[1] = t1;
            run[2] = t2;
            run[DLB_LANE_POWER] = tp;
        }
        rt[0] -= amount;
        rt[1] -= amount;
        rt[2] -= amount;
        rt[DLB_LANE_POWER] -= amount_n;
    } else if ((used & (used - 1u)) == 0 && used != 0) {
        const int32_t ph = lowest_lane[used];
        if (((rt[ph] - amount) | (rt[DLB_LANE_POWER] - amount_n)) < 0) {
            return -1;
        }
        for (int32_t i = 0; i < top; i++) {
            int64_t *run = cx[path[i]].run;
            const int64_t t = run[ph] - amount, tp = run[DLB_LANE_POWER] - amount_n;
            if ((t | tp) < 0) {
                return i;
            }
            run[ph] = t;
            run[DLB_LANE_POWER] = tp;
        }
        rt[ph] -= amount;
        rt[DLB_LANE_POWER] -= amount_n;
    } else { /* two phases (or none): test the whole path, then take */
        for (int32_t i = 0; i <= top; i++) {
            if (short_lane(s, path[i], used, amount, amount_n) >= 0) {
                return -1;
            }
        }
        path_subtract(s, path, top + 1, used, amount, amount_n);
    }
    s->gen++;
    return -2;
}

/* the minimum of run[] per lane over circuit c's path, cached per circuit until run[] changes; the
 * first lookup after a change recomputes only the path's circuits not yet refreshed */
static const int64_t *path_min(dlb_site *s, int32_t c)
{
    circuit_scratch *cs = &s->cx[c];
    if (cs->pm_gen == s->gen) {
        return cs->pm;
    }
    const int32_t *path = s->path + (size_t)c * DLB_MAX_DEPTH;
    int32_t i = 0, depth = s->plen[c];
    while (i < depth && s->cx[path[i]].pm_gen != s->gen) {
        i++;
    }
    const int64_t *up = i < depth ? s->cx[path[i]].pm : NULL;
    for (int32_t j = i - 1; j >= 0; j--) {
        circuit_scratch *a = &s->cx[path[j]];
        for (int ln = 0; ln < DLB_LANES; ln++) {
            a->pm[ln] = up != NULL ? min64(a->run[ln], up[ln]) : a->run[ln];
        }
        a->pm_gen = s->gen;
        up = a->pm;
    }
    return cs->pm;
}

/* how much more (per conductor) charger k can take from the set-point budget run[], at most want */
static int64_t run_room(dlb_site *s, int32_t k, int64_t want)
{
    /* min over the path of fdiv(run_power, n) = fdiv(min over the path of run_power, n): floor division
     * by n > 0 is monotone; uncapped power lanes hold INF and never reach the minimum */
    const charger_scratch *x = &s->kx[k];
    const int64_t *pm = path_min(s, s->chg[k].circuit);
    const uint32_t used = x->used;
    int64_t room = want;
    if (used & 1u) {
        room = min64(room, pm[0]);
    }
    if (used & 2u) {
        room = min64(room, pm[1]);
    }
    if (used & 4u) {
        room = min64(room, pm[2]);
    }
    if (pm[DLB_LANE_POWER] < INF / 2) { /* else no power cap on the path */
        room = min64(room, x->n_used == 1 ? pm[DLB_LANE_POWER] : fdiv(pm[DLB_LANE_POWER], x->n_used));
    }
    return room;
}

static void run_take(dlb_site *s, int32_t k, uint32_t used, int32_t n, int64_t amount)
{
    if (amount == 0) {
        return;
    }
    s->gen++;
    int32_t depth;
    const int32_t *path = path_of(s, k, &depth);
    path_subtract(s, path, depth, used, amount, amount * n);
}

/* ------------------------------------------------------------------------------------------------ */
/* configuration */

void dlb_params_default(dlb_params *p)
{
    if (p == NULL) {
        return;
    }
    p->voltage_v = 230;
    p->policy = DLB_POLICY_FAIR;
    p->meter_timeout_ms = 10000;
    p->charger_timeout_ms = 10000;
    p->recovery_hold_ms = 10000;
    p->rotation_period_ms = 900000;
    p->min_on_ms = 120000;
    p->min_off_ms = 60000;
    p->max_starts_per_hour = 6;
    p->ramp_up_ma_per_s = 0;
    p->reclaim_hold_ms = 60000;
    p->reclaim_margin_ma = 1000;
    p->probe_interval_ms = 300000;
    p->phase_switch_hold_ms = 300000;
    p->max_phase_switches = 4;
    p->active_threshold_ma = 1000;
    p->follow_time_ms = 10000;
    p->meter_latency_ms = 0;
}

typedef struct {
    size_t site, circ, chg, power_cap, dfs, range_start, range_end, ms, ks, kcold, kx, cx, ca, items, tmp,
        heap, key, child_off, child_list, pre, adm, group, path, plen, hp, qw, perm_start, perm_end, ev_start,
        ev_end, ev_other, dirty, unbal_path, over_own, over_path, dfs_pos, glist, rank_start, rank_end, pairs,
        pairs_tmp, bm, tlv, total;
    size_t kk4;  /* stage 4's kept keys */
    size_t akey; /* stages 4-5's admission keys, then stage 5's batch arrays (admit_arrays: no field of
                    their own, which would grow dlb_init's frame) */
} layout;

/* stage 5's array (dlb_site.adm_acc) at the end of the layout: its size, and its place */
static size_t admit_bytes(size_t nc)
{
    return align8(nc * ADM_ACC * sizeof(int64_t));
}

static void admit_arrays(dlb_site *s, unsigned char *at)
{
    s->adm_acc = (int64_t *)(void *)at;
}

static int make_layout(size_t nc, size_t nk, layout *l)
{
    if (nc < 1 || nc > DLB_MAX_CIRCUITS || nk > DLB_MAX_CHARGERS) {
        return 0;
    }
    size_t n_items = 2 * nk + 1; /* events of the fill: two per charger; also the admission keys */
    size_t o = 0;
    l->site = o;
    o += align8(sizeof(dlb_site));
    l->circ = o;
    o += align8(nc * sizeof(dlb_circuit));
    l->chg = o;
    o += align8(nk * sizeof(dlb_charger));
    l->power_cap = o;
    o += align8(nc * sizeof(int64_t));
    l->dfs = o;
    o += align8(nk * sizeof(int32_t));
    l->range_start = o;
    o += align8(nc * sizeof(int32_t));
    l->range_end = o;
    o += align8(nc * sizeof(int32_t));
    l->ms = o;
    o += align8(nc * sizeof(meter_state));
    l->ks = o;
    o += align8(nk * sizeof(charger_state));
    l->kcold = o;
    o += align8(nk * sizeof(charger_cold));
    l->kx = o; /* 56 bytes more: dlb_init aligns the records to cache lines (see charger_scratch) */
    o += nk * sizeof(charger_scratch) + 56u;
    l->cx = o; /* cx and ca: 56 bytes more each, aligned to cache lines by dlb_init (see circuit_scratch) */
    o += nc * sizeof(circuit_scratch) + 56u;
    l->ca = o;
    o += nc * sizeof(circuit_acc) + 56u;
    l->items = o;
    o += align8(n_items * sizeof(int32_t));
    l->tmp = o;
    o += align8(n_items * sizeof(int32_t));
    l->heap = o;
    o += align8(4 * nc * sizeof(int32_t));
    l->key = o;
    o += align8(n_items * sizeof(uint64_t));
    l->child_off = o;
    o += align8((nc + 1) * sizeof(int32_t));
    l->child_list = o;
    o += align8(nc * sizeof(int32_t));
    l->pre = o;
    o += align8(nc * sizeof(int32_t));
    l->adm = o;
    o += align8(nk * sizeof(int32_t));
    l->group = o;
    o += align8(nk * sizeof(int32_t));
    l->path = o;
    o += align8(nc * DLB_MAX_DEPTH * sizeof(int32_t));
    l->plen = o;
    o += align8(nc * sizeof(int32_t));
    l->hp = o;
    o += align8(nc * sizeof(int32_t));
    l->dirty = o;
    o += align8(nc * sizeof(int32_t));
    l->unbal_path = o;
    o += align8(nc * sizeof(int32_t));
    /* evo: right after unbal_path (no field of its own, which would grow dlb_init's frame) */
    o += align8(nc * DLB_PHASES * sizeof(int64_t));
    l->over_own = o;
    o += align8(nc * sizeof(uint32_t));
    l->over_path = o;
    o += align8(nc * sizeof(uint32_t));
    l->qw = o;
    o += align8(nk * sizeof(int32_t));
    l->perm_start = o;
    o += align8(nk * sizeof(int32_t));
    l->perm_end = o;
    o += align8(nk * sizeof(int32_t));
    l->ev_start = o;
    o += align8(nk * sizeof(int32_t));
    l->ev_end = o;
    o += align8(nk * sizeof(int32_t));
    l->ev_other = o;
    o += align8(nk * sizeof(int32_t));
    l->dfs_pos = o;
    o += align8(nk * sizeof(int32_t));
    l->glist = o;
    o += align8(nk * sizeof(int32_t));
    l->rank_start = o;
    o += align8(nk * sizeof(int32_t));
    l->rank_end = o;
    o += align8(nk * sizeof(int32_t));
    l->pairs = o;
    o += align8(nk * sizeof(kpair));
    l->pairs_tmp = o;
    o += align8(nk * sizeof(kpair));
    l->bm = o;
    o += align8(3 * ((nk + 63) / 64) * sizeof(uint64_t));
    l->tlv = o;
    o += align8((nc + 1) * sizeof(int64_t));
    l->kk4 = o;
    o += align8(nk * sizeof(kept_key));
    l->akey = o;
    o += align8(nk * sizeof(uint64_t));
    o += admit_bytes(nc);
    o += align8(nk * sizeof(int32_t)); /* stage 6's start_run, the last array (fill_cfg) */
    l->total = o;
    return 1;
}

size_t dlb_memory_size(size_t n_circuits, size_t n_chargers)
{
    layout l;
    return make_layout(n_circuits, n_chargers, &l) ? l.total : 0;
}

void dlb_config_error(const void *mem, const char **scope, int32_t *index, const char **field,
                      const char **problem)
{
    const dlb_site *s = (const dlb_site *)mem;
    if (scope != NULL) {
        *scope = s != NULL && s->err_scope != NULL ? s->err_scope : "";
    }
    if (index != NULL) {
        *index = s != NULL ? s->err_index : -1;
    }
    if (field != NULL) {
        *field = s != NULL && s->err_field != NULL ? s->err_field : "";
    }
    if (problem != NULL) {
        *problem = s != NULL && s->err_problem != NULL ? s->err_problem : "";
    }
}

static int fail(dlb_site *s, const char *scope, int32_t index, const char *field, const char *problem)
{
    s->err_scope = scope;
    s->err_index = index;
    s->err_field = field;
    s->err_problem = problem;
    return DLB_ERR_CONFIG;
}

#define CHECK(cond, scope, index, field, problem)                                                     \
    do {                                                                                              \
        if (!(cond)) {                                                                                \
            return fail(s, scope, index, field, problem);                                             \
        }                                                                                             \
    } while (0)

static int in_range(int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; }

static int validate(dlb_site *s, const dlb_params *p, const dlb_circuit *circ, size_t nc,
                    const dlb_charger *chg, size_t nk)
{
    CHECK(nc >= 1 && nc <= DLB_MAX_CIRCUITS, "circuits", -1, "", "count out of range");
    CHECK(nk <= DLB_MAX_CHARGERS, "chargers", -1, "", "count out of range");
    CHECK(in_range(p->voltage_v, 100, 1000), "params", -1, "voltage_v", "out of range");
    CHECK(in_range(p->policy, 0, DLB_POLICY_LLF), "params", -1, "policy", "unknown policy");
    {
        const int32_t durations[] = {p->meter_timeout_ms,  p->charger_timeout_ms, p->recovery_hold_ms,
                                     p->rotation_period_ms, p->min_on_ms,         p->min_off_ms,
                                     p->reclaim_hold_ms,    p->probe_interval_ms, p->phase_switch_hold_ms,
                                     p->follow_time_ms, p->meter_latency_ms};
        static const char *const names[] = {"meter_timeout_ms",   "charger_timeout_ms", "recovery_hold_ms",
                                            "rotation_period_ms", "min_on_ms",          "min_off_ms",
                                            "reclaim_hold_ms",    "probe_interval_ms",  "phase_switch_hold_ms",
                                            "follow_time_ms", "meter_latency_ms"};
        for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
            CHECK(in_range(durations[i], 0, DLB_MAX_DURATION_MS), "params", -1, names[i], "out of range");
        }
    }
    CHECK(in_range(p->max_starts_per_hour, 0, DLB_MAX_STARTS), "params", -1, "max_starts_per_hour",
          "out of range");
    CHECK(in_range(p->ramp_up_ma_per_s, 0, DLB_MAX_CURRENT_MA), "params", -1, "ramp_up_ma_per_s",
          "out of range");
    CHECK(in_range(p->reclaim_margin_ma, 0, DLB_MAX_CURRENT_MA), "params", -1, "reclaim_margin_ma",
          "out of range");
    CHECK(in_range(p->max_phase_switches, 0, 1000), "params", -1, "max_phase_switches", "out of range");
    CHECK(in_range(p->active_threshold_ma, 0, DLB_MAX_CURRENT_MA), "params", -1, "active_threshold_ma",
          "out of range");
    for (size_t i = 0; i < nc; i++) {
        const dlb_circuit *c = &circ[i];
        int32_t ix = (int32_t)i;
        CHECK(c->parent == DLB_NONE || (c->parent >= 0 && c->parent < ix), "circuits", ix, "parent",
              "must be an earlier circuit or none");
        for (int ph = 0; ph < DLB_PHASES; ph++) {
            CHECK(in_range(c->limit_ma[ph], 0, DLB_MAX_CURRENT_MA), "circuits", ix, "limit_ma", "out of range");
            CHECK(in_range(c->fallback_base_ma[ph], -DLB_MAX_CURRENT_MA, DLB_MAX_CURRENT_MA), "circuits", ix,
                  "fallback_base_ma", "out of range");
        }
        CHECK(in_range(c->margin_ma, 0, DLB_MAX_CURRENT_MA), "circuits", ix, "margin_ma", "out of range");
        CHECK(in_range(c->power_limit_w, 0, DLB_MAX_POWER_W), "circuits", ix, "power_limit_w", "out of range");
        CHECK(in_range(c->unbalance_limit_ma, 0, DLB_MAX_CURRENT_MA), "circuits", ix, "unbalance_limit_ma",
              "out of range");
        CHECK(c->has_meter == 0 || c->has_meter == 1, "circuits", ix, "has_meter", "must be 0 or 1");
    }
    for (size_t i = 0; i < nc; i++) {
        int depth = 0;
        for (int32_t c = (int32_t)i; c != DLB_NONE; c = circ[c].parent) {
            depth++;
        }
        CHECK(depth <= DLB_MAX_DEPTH, "circuits", (int32_t)i, "parent", "tree deeper than DLB_MAX_DEPTH");
    }
    for (size_t i = 0; i < nk; i++) {
        const dlb_charger *k = &chg[i];
        int32_t ix = (int32_t)i;
        CHECK(k->circuit >= 0 && (size_t)k->circuit < nc, "chargers", ix, "circuit", "unknown circuit");
        CHECK(k->phases == 1 || k->phases == 3, "chargers", ix, "phases", "must be 1 or 3");
        for (int ph = 0; ph < k->phases; ph++) {
            CHECK(in_range(k->phase_map[ph], 0, DLB_PHASES - 1), "chargers", ix, "phase_map", "phase out of range");
        }
        if (k->phases == 3) {
            unsigned seen = (1u << k->phase_map[0]) | (1u << k->phase_map[1]) | (1u << k->phase_map[2]);
            CHECK(seen == 7u, "chargers", ix, "phase_map", "must be a permutation of L1, L2, L3");
        }
        CHECK(in_range(k->step_ma, 1, DLB_MAX_CURRENT_MA), "chargers", ix, "step_ma", "out of range");
        CHECK(in_range(k->min_ma, 1, DLB_MAX_CURRENT_MA), "chargers", ix, "min_ma", "out of range");
        CHECK(k->max_ma >= k->min_ma && k->max_ma <= DLB_MAX_CURRENT_MA, "chargers", ix, "max_ma",
              "must be >= min_ma");
        CHECK(k->min_ma % k->step_ma == 0, "chargers", ix, "min_ma", "not a multiple of step_ma");
        CHECK(k->max_ma % k->step_ma == 0, "chargers", ix, "max_ma", "not a multiple of step_ma");
        CHECK(in_range(k->priority, 0, 255), "chargers", ix, "priority", "out of range");
        CHECK(in_range(k->weight, 1, DLB_MAX_WEIGHT), "chargers", ix, "weight", "out of range");
        CHECK(in_range(k->failsafe_ma, 0, DLB_MAX_CURRENT_MA), "chargers", ix, "failsafe_ma", "out of range");
        CHECK(k->can_switch_phases == 0 || k->can_switch_phases == 1, "chargers", ix, "can_switch_phases",
              "must be 0 or 1");
        CHECK(!k->can_switch_phases || k->phases == 3, "chargers", ix, "can_switch_phases",
              "only a 3-phase charger can switch phases");
    }
    return DLB_OK;
}

static void admit_cfg(dlb_site *s); /* stage 5's configuration summary (see there) */
static void outputs_cfg(dlb_site *s); /* stages 7-9's copy of the configuration (see there) */
static void fill_cfg(dlb_site *s, unsigned char *end); /* stage 6's start_run (see there) */

int dlb_init(void *mem, size_t mem_size, const dlb_params *params, const dlb_circuit *circuits,
             size_t n_circuits, const dlb_charger *chargers, size_t n_chargers, dlb_site **site)
{
    layout l;
    if (site != NULL) {
        *site = NULL;
    }
    if (mem == NULL || params == NULL || circuits == NULL || (chargers == NULL && n_chargers > 0) ||
        site == NULL) {
        return DLB_ERR_ARGUMENT;
    }
    if (((uintptr_t)mem & 7u) != 0 || mem_size < sizeof(dlb_site)) {
        return DLB_ERR_MEMORY;
    }
    dlb_site *s = (dlb_site *)mem;
    memset(s, 0, sizeof(*s));
    s->err_index = -1;
    int rc = validate(s, params, circuits, n_circuits, chargers, n_chargers);
    if (rc != DLB_OK) {
        return rc;
    }
    if (!make_layout(n_circuits, n_chargers, &l) || mem_size < l.total) {
        return DLB_ERR_MEMORY;
    }
    unsigned char *base = (unsigned char *)mem;
    memset(base + sizeof(dlb_site), 0, l.total - sizeof(dlb_site));
    s->p = *params;
    s->nc = (int32_t)n_circuits;
    s->nk = (int32_t)n_chargers;
    s->last_now = TNONE;
    s->circ = (dlb_circuit *)(void *)(base + l.circ);
    s->chg = (dlb_charger *)(void *)(base + l.chg);
    s->power_cap = (int64_t *)(void *)(base + l.power_cap);
    s->dfs = (int32_t *)(void *)(base + l.dfs);
    s->range_start = (int32_t *)(void *)(base + l.range_start);
    s->range_end = (int32_t *)(void *)(base + l.range_end);
    s->ms = (meter_state *)(void *)(base + l.ms);
    s->ks = (charger_state *)(void *)(base + l.ks);
    s->kcold = (charger_cold *)(void *)(base + l.kcold);
    s->kx = (charger_scratch *)(void *)(base + l.kx + ((64u - (uintptr_t)(base + l.kx) % 64u) % 64u));
    s->cx = (circuit_scratch *)(void *)(base + l.cx + ((64u - (uintptr_t)(base + l.cx) % 64u) % 64u));
    s->ca = (circuit_acc *)(void *)(base + l.ca + ((64u - (uintptr_t)(base + l.ca) % 64u) % 64u));
    s->items = (int32_t *)(void *)(base + l.items);
    s->tmp = (int32_t *)(void *)(base + l.tmp);
    s->heap = (int32_t *)(void *)(base + l.heap);
    s->key = (uint64_t *)(void *)(base + l.key);
    s->child_off = (int32_t *)(void *)(base + l.child_off);
    s->child_list = (int32_t *)(void *)(base + l.child_list);
    s->pre = (int32_t *)(void *)(base + l.pre);
    s->adm = (int32_t *)(void *)(base + l.adm);
    s->group = (int32_t *)(void *)(base + l.group);
    s->path = (int32_t *)(void *)(base + l.path);
    s->plen = (int32_t *)(void *)(base + l.plen);
    s->hp = (int32_t *)(void *)(base + l.hp);
    s->dirty = (int32_t *)(void *)(base + l.dirty);
    s->unbal_path = (int32_t *)(void *)(base + l.unbal_path);
    s->evo = (int64_t *)(void *)(base + l.unbal_path + align8(n_circuits * sizeof(int32_t))); /* (make_layout) */
    s->over_own = (uint32_t *)(void *)(base + l.over_own);
    s->over_path = (uint32_t *)(void *)(base + l.over_path);
    s->qw = (int32_t *)(void *)(base + l.qw);
    s->perm_start = (int32_t *)(void *)(base + l.perm_start);
    s->perm_end = (int32_t *)(void *)(base + l.perm_end);
    s->ev_start = (int32_t *)(void *)(base + l.ev_start);
    s->ev_end = (int32_t *)(void *)(base + l.ev_end);
    s->ev_other = (int32_t *)(void *)(base + l.ev_other);
    s->dfs_pos = (int32_t *)(void *)(base + l.dfs_pos);
    s->glist = (int32_t *)(void *)(base + l.glist);
    s->rank_start = (int32_t *)(void *)(base + l.rank_start);
    s->rank_end = (int32_t *)(void *)(base + l.rank_end);
    s->pairs = (kpair *)(void *)(base + l.pairs);
    s->pairs_tmp = (kpair *)(void *)(base + l.pairs_tmp);
    s->kk4 = (kept_key *)(void *)(base + l.kk4);
    s->akey = (uint64_t *)(void *)(base + l.akey);
    admit_arrays(s, base + l.akey + align8(n_chargers * sizeof(uint64_t)));
    s->bm = (uint64_t *)(void *)(base + l.bm);
    s->n_words = (s->nk + 63) / 64;
    memset(s->bm, 0, 3 * (size_t)s->n_words * sizeof(uint64_t));
    s->tlv = (int64_t *)(void *)(base + l.tlv);
    memcpy(s->circ, circuits, n_circuits * sizeof(dlb_circuit));
    if (n_chargers > 0) {
        memcpy(s->chg, chargers, n_chargers * sizeof(dlb_charger));
    }
    for (int32_t c = 0; c < s->nc; c++) {
        s->power_cap[c] = s->circ[c].power_limit_w > 0
                              ? (int64_t)s->circ[c].power_limit_w * 1000 / s->p.voltage_v
                              : INF;
        meter_state *m = &s->ms[c];
        m->stale = 1;
        m->recover_at_once = 1;
        m->ok_since = TNONE;
        m->probe_owner = DLB_NONE;
    }
    for (int32_t k = 0; k < s->nk; k++) {
        charger_state *st = &s->ks[k];
        st->lost = 1;
        st->recover_at_once = 1;
        st->ok_since = st->on_since = st->off_since = st->wait_since = TNONE;
        st->departure = st->last_switch = st->below_since = TNONE;
        st->reclaimed_at = st->probe_since = st->hold_end = st->cap_until = TNONE;
        s->kcold[k].up_since = TNONE;
        st->state = DLB_STATE_DISCONNECTED;
        st->mode = s->chg[k].phases;
        st->energy_need_wh = -1;
        s->pairs[k].item = k; /* stage 5 starts from the index order */
    }
    /* Depth-first pre-order of circuits (lowest index first among siblings, as the reference does);
     * chargers laid out in that order make every subtree one contiguous range of dfs[]. Child lists
     * are built by counting (O(C)); the traversal stack borrows the heap array (4C entries). */
    {
        int32_t *off = s->child_off, *list = s->child_list, *stack = s->heap, *pre = s->pre;
        for (int32_t c = 0; c <= s->nc; c++) {
            off[c] = 0;
        }
        for (int32_t c = 0; c < s->nc; c++) {
            if (s->circ[c].parent != DLB_NONE) {
                off[s->circ[c].parent + 1]++;
            }
        }
        for (int32_t c = 0; c < s->nc; c++) {
            off[c + 1] += off[c];
        }
        for (int32_t c = 0; c < s->nc; c++) { /* ascending: each child list is in index order */
            int32_t par = s->circ[c].parent;
            if (par != DLB_NONE) {
                list[s->range_start[par]++ + off[par]] = c;
            }
        }
        int32_t top = 0, n_pre = 0;
        for (int32_t c = s->nc - 1; c >= 0; c--) {
            if (s->circ[c].parent == DLB_NONE) {
                stack[top++] = c;
            }
        }
        while (top > 0) {
            int32_t c = stack[--top];
            pre[n_pre++] = c;
            for (int32_t i = off[c + 1] - 1; i >= off[c]; i--) {
                stack[top++] = list[i];
            }
        }
        int32_t *count = s->range_end;
        for (int32_t c = 0; c < s->nc; c++) {
            count[c] = 0;
        }
        for (int32_t k = 0; k < s->nk; k++) {
            count[s->chg[k].circuit]++;
        }
        int32_t acc = 0;
        for (int32_t i = 0; i < n_pre; i++) {
            int32_t c = pre[i], n = count[c];
            s->range_start[c] = acc;
            count[c] = acc; /* fill cursor; ends as the end of c's own chargers */
            acc += n;
        }
        for (int32_t k = 0; k < s->nk; k++) {
            s->dfs[count[s->chg[k].circuit]++] = k;
        }
        /* extend each end over the descendants: children have larger indices, so they are final first */
        for (int32_t c = s->nc - 1; c >= 0; c--) {
            int32_t par = s->circ[c].parent;
            if (par != DLB_NONE && count[c] > count[par]) {
                count[par] = count[c];
            }
        }
    }
    for (int32_t c = 0; c < s->nc; c++) {
        s->hp[c] = s->power_cap[c] != INF;
        int32_t d = 0;
        for (int32_t a = c; a != DLB_NONE; a = s->circ[a].parent) {
            s->path[(size_t)c * DLB_MAX_DEPTH + (size_t)d++] = a;
        }
        s->plen[c] = d;
        /* parents come first, so the parent's flag is final */
        s->unbal_path[c] = s->circ[c].unbalance_limit_ma > 0 ||
                           (s->circ[c].parent != DLB_NONE && s->unbal_path[s->circ[c].parent]);
    }
    for (int32_t i = 0; i < s->nk; i++) {
        s->dfs_pos[s->dfs[i]] = i;
    }
    /* the fill's events in level order, presorted once: START levels (min * Q / w) never change, END
     * levels (hi * Q / w) are max * Q / w unless a reclaim cap or the ramp lowers hi (merged per fill) */
    for (int32_t k = 0; k < s->nk; k++) {
        s->qw[k] = DLB_Q / s->chg[k].weight;
        s->perm_start[k] = s->perm_end[k] = k;
        s->key[k] = (uint64_t)s->chg[k].min_ma * (uint64_t)s->qw[k];
    }
    merge_sort(s->perm_start, s->tmp, (size_t)s->nk, s->key);
    for (int32_t k = 0; k < s->nk; k++) {
        s->key[k] = (uint64_t)s->chg[k].max_ma * (uint64_t)s->qw[k];
    }
    merge_sort(s->perm_end, s->tmp, (size_t)s->nk, s->key);
    for (int32_t i = 0; i < s->nk; i++) {
        s->rank_start[s->perm_start[i]] = i;
        s->rank_end[s->perm_end[i]] = i;
    }
    tree_init(s);
    admit_cfg(s);
    outputs_cfg(s);
    fill_cfg(s, base + l.total);
    *site = s;
    return DLB_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* stage 1: ingest */

static void ingest_meter(dlb_site *s, int32_t c, const dlb_meter_input *mi, int64_t now)
{
    meter_state *ms = &s->ms[c];
    if (!s->circ[c].has_meter) {
        return;
    }
    if (mi->fresh) {
        /* each current in [-max, max] (all three tested: no side effects) */
        const int ok = in_range(mi->current_ma[0], -DLB_MAX_CURRENT_MA, DLB_MAX_CURRENT_MA) &
                       in_range(mi->current_ma[1], -DLB_MAX_CURRENT_MA, DLB_MAX_CURRENT_MA) &
                       in_range(mi->current_ma[2], -DLB_MAX_CURRENT_MA, DLB_MAX_CURRENT_MA);
        if (ok) {
            memcpy(ms->ma, mi->current_ma, sizeof(ms->ma));
            ms->t_last = now;
            ms->seen = 1;
        }
    }
    if (!(ms->seen && now - ms->t_last <= s->p.meter_timeout_ms)) {
        if (!ms->stale) {
            ms->recover_at_once = 0;
        }
        ms->stale = 1;
        ms->ok_since = TNONE;
    } else {
        if (ms->ok_since == TNONE) {
            ms->ok_since = now;
        }
        if (ms->stale && (ms->recover_at_once || now - ms->ok_since >= s->p.recovery_hold_ms)) {
            ms->stale = 0;
        }
    }
}

/* smallest EV sum per phase below a meter within meter_latency_ms (buckets of latency/8) */
static void ev_window(const dlb_params *p, meter_state *ms, const int64_t *ev, int64_t now, int64_t *out)
{
    if (p->meter_latency_ms == 0) { /* meter and charger readings taken as simultaneous */
        ms->n_hist = 0;
        for (int ph = 0; ph < DLB_PHASES; ph++) {
            out[ph] = ev[ph];
        }
        return;
    }
    int64_t width = max64(1, p->meter_latency_ms / 8);
    int32_t n = ms->n_hist;
    if (n > 0 && now - ms->hist_t[n - 1] < width) {
        for (int ph = 0; ph < DLB_PHASES; ph++) {
            ms->hist_ev[n - 1][ph] = min64(ms->hist_ev[n - 1][ph], ev[ph]);
        }
    } else {
        ms->hist_t[n] = now;
        for (int ph = 0; ph < DLB_PHASES; ph++) {
            ms->hist_ev[n][ph] = ev[ph];
        }
        n++;
    }
    int32_t drop = 0;
    while (drop < n && now - ms->hist_t[drop] > p->meter_latency_ms + width) {
        drop++;
    }
    if (n - drop > DLB_EV_HISTORY) {
        drop = n - DLB_EV_HISTORY;
    }
    if (drop > 0) {
        memmove(ms->hist_t, ms->hist_t + drop, (size_t)(n - drop) * sizeof(ms->hist_t[0]));
        memmove(ms->hist_ev, ms->hist_ev + drop, (size_t)(n - drop) * sizeof(ms->hist_ev[0]));
        n -= drop;
    }
    ms->n_hist = n;
    for (int ph = 0; ph < DLB_PHASES; ph++) {
        out[ph] = ms->hist_ev[0][ph];
        for (int32_t i = 1; i < n; i++) {
            out[ph] = min64(out[ph], ms->hist_ev[i][ph]);
        }
    }
}

static void stop_probe(dlb_site *s, int32_t k)
{
    charger_state *st = &s->ks[k];
    if (st->probing) {
        meter_state *owner = &s->ms[s->chg[k].circuit];
        if (owner->probe_owner == k) {
            owner->probe_owner = DLB_NONE;
            owner->rel_step = (uint32_t)s->n_steps;
            owner->rel_at = s->in_stage4 ? k : -1;
        }
    }
    st->probing = 0;
    st->probe_since = TNONE;
}

static void start_session(dlb_site *s, int32_t k, int64_t now)
{
    charger_state *st = &s->ks[k];
    st->in_session = 1;
    st->arrival = now;
    st->departure = TNONE;
    st->energy_need_wh = -1;
    st->delivered_mams = 0;
    s->kcold[k].switches = 0;
    st->last_switch = s->kcold[k].up_since = TNONE;
    s->kcold[k].n_starts = 0;
    st->cap_until = TNONE;
    st->mode = s->chg[k].phases;
    st->below_since = st->reclaimed_at = TNONE;
    st->reclaim_cap = 0;
    stop_probe(s, k);
    st->wait_since = now;
}

static void end_session(dlb_site *s, int32_t k)
{
    charger_state *st = &s->ks[k];
    st->in_session = 0;
    st->below_since = st->reclaimed_at = TNONE;
    st->reclaim_cap = 0;
    stop_probe(s, k);
    st->wait_since = TNONE;
}

/* The usual cases of a charger reading: a fresh one (fresh = 1) of the stored state, from a charger that
 * is not lost, is one 8-byte compare of the reading's head (fresh and state, in the order of the
 * struct's bytes) with its charger_in key; iclass says which case: a waiting EV (demanding, every stored
 * current 0; only with active_threshold_ma > 0), a charging one (state CHARGING) that draws, one without
 * demand. IK_NONE is none of them (lost, or a demanding state other than CHARGING with a current drawn:
 * rare, charger_general's). */
enum { IK_NONE = 0, IK_WAIT = 1, IK_DRAW = 2, IK_IDLE = 3 };
_Static_assert(offsetof(dlb_charger_input, fresh) == 0 && offsetof(dlb_charger_input, state) == sizeof(int32_t),
               "a reading's head is fresh and state");
_Static_assert(offsetof(dlb_charger_input, session_update) ==
                   offsetof(dlb_charger_input, current_ma) + DLB_PHASES * sizeof(int32_t),
               "a reading's currents and session_update are 16 contiguous bytes");
static inline int64_t reading_head(int32_t fresh, int32_t state)
{
    const int32_t h[2] = {fresh, state};
    int64_t v;
    memcpy(&v, h, sizeof(v));
    return v;
}

/* a reading's current_ma[2] in the low half, its session_update in the high one */
static inline uint64_t c2_su(const dlb_charger_input *ci)
{
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v; /* (the two are adjacent: see the assertion above; the bytes are addressed from the whole
                 * reading, not past the end of current_ma) */
    memcpy(&v, (const unsigned char *)ci + offsetof(dlb_charger_input, current_ma) + 2 * sizeof(int32_t), sizeof(v));
    return v;
#else
    return (uint32_t)ci->current_ma[2] | (uint64_t)(uint32_t)ci->session_update << 32;
#endif
}

/* charger_in.off[] addresses evsum[ph] in the circuit scratch array; fixed[ph] and meas_d[ph] of the same
 * circuit lie at these distances from it */
#define CX_FIXED ((int32_t)offsetof(circuit_acc, fixed) - (int32_t)offsetof(circuit_acc, evsum))
#define CX_MEAS_D ((int32_t)offsetof(circuit_acc, meas_d) - (int32_t)offsetof(circuit_acc, evsum))
static inline int64_t *cx_at(char *cb, int32_t off, int32_t rel) { return (int64_t *)(void *)(cb + off + rel); }

static void ingest_charger(dlb_site *s, int32_t k, charger_state *st, const dlb_charger_input *ci, int64_t now)
{
    /* (the usual case, a fresh reading of the stored state, is charger_pass's: see there) */
    if (ci->fresh && in_range(ci->state, 0, DLB_STATE_UNAVAILABLE)) {
        int ok = 1;
        for (int i = 0; i < DLB_PHASES; i++) {
            ok = ok && in_range(ci->current_ma[i], 0, DLB_MAX_CURRENT_MA);
        }
        if (ok) {
            if (is_demanding(ci->state) && !st->in_session) {
                start_session(s, k, now);
            }
            if (ci->state == DLB_STATE_DISCONNECTED && st->in_session) {
                end_session(s, k);
            }
            if (ci->session_update && st->in_session) {
                st->departure = ci->departure_in_ms >= 0 ? now + ci->departure_in_ms : TNONE;
                st->energy_need_wh = ci->energy_need_wh >= 0 ? ci->energy_need_wh : -1;
            }
            st->state = ci->state;
            memcpy(st->meas, ci->current_ma, sizeof(st->meas));
            st->t_last = now;
            st->seen = 1;
        }
    }
    if (!(st->seen && now - st->t_last <= s->p.charger_timeout_ms)) {
        if (!st->lost) {
            st->recover_at_once = 0;
        }
        st->lost = 1;
        st->ok_since = TNONE;
    } else {
        if (st->ok_since == TNONE) {
            st->ok_since = now;
        }
        if (st->lost && (st->recover_at_once || now - st->ok_since >= s->p.recovery_hold_ms)) {
            st->lost = 0;
        }
    }
    /* only this function changes lost and in_session (the usual case in charger_pass changes neither) */
    st->counting = (uint8_t)(st->in_session && !st->lost);
    const dlb_charger *kc = &s->chg[k];
    charger_in *kn = &s->ks[k].in;
    kn->key = st->lost ? 0 : reading_head(1, st->state);
    /* stored currents passed the range check (or are dlb_init's 0): the sum fits */
    kn->esum = (int32_t)(st->meas[0] + (kc->phases == 3 ? (int64_t)st->meas[1] + st->meas[2] : 0));
    const int32_t cbase =
        kc->circuit * (int32_t)sizeof(circuit_acc) + (int32_t)offsetof(circuit_acc, evsum);
    for (int i = 0; i < DLB_PHASES; i++) {
        kn->off[i] = cbase + kc->phase_map[i < kc->phases ? i : 0] * (int32_t)sizeof(int64_t);
    }
    kn->used1 = 1u << kc->phase_map[0];
    kn->three = (uint8_t)(kc->phases == 3);
    if (st->lost) {
        kn->iclass = IK_NONE;
    } else if (!is_demanding(st->state)) {
        kn->iclass = IK_IDLE;
    } else if ((st->meas[0] | st->meas[1] | st->meas[2]) == 0) {
        /* (with active_threshold_ma <= 0 a waiting EV on one phase may be narrowed, a matter of time:
         * charger_general's) */
        kn->iclass = s->p.active_threshold_ma > 0 ? IK_WAIT : IK_NONE;
    } else {
        kn->iclass = st->state == DLB_STATE_CHARGING ? IK_DRAW : IK_NONE;
    }
}

/* stage 2: what a charger wants and which site phases it loads (a charger with demand: in charger_pass) */
static void classify_none(charger_scratch *x, int32_t kind)
{
    x->narrowed = 0;
    x->kind = (uint8_t)kind; /* KIND_* */
    x->used = 0;
    x->n_used = 0;
    x->m = 0;
    x->drawn = 0;
}

/* follow_done of a charger in state CHARGING (charger_pass's IK_DRAW) */
static inline int follow_charging(const charger_state *st, int64_t cut)
{
    return st->on_since != TNONE && max64(st->on_since, st->last_switch) <= cut;
}

/* Charging since the last start or phase switch for at least follow_time_ms (since cut = now -
 * follow_time_ms or earlier): the EV had time to use every conductor. Stored times are >= 0 and TNONE is
 * -1, so the later of on_since and last_switch is the one to wait for (on_since is set while the charger
 * is on). */
static inline int follow_done(const charger_state *st, int64_t cut)
{
    return st->state == DLB_STATE_CHARGING && follow_charging(st, cut);
}

/* charger k's counted draw m counts over more than dlb.h's rule is sure to on its used phases: recorded in
 * evo on every circuit of its path with an unbalance limit (out of line: rare) */
DLB_NOINLINE static void evo_add(dlb_site *s, int32_t k, int64_t over, uint32_t used)
{
    int32_t depth;
    const int32_t *path = path_of(s, k, &depth);
    for (int32_t i = 0; i < depth; i++) {
        const int32_t c = path[i];
        if (s->circ[c].unbalance_limit_ma > 0) {
            int64_t *eo = &s->evo[(size_t)c * DLB_PHASES];
            for (int ph = 0; ph < DLB_PHASES; ph++) {
                eo[ph] += ((used >> ph) & 1u) ? over : 0;
            }
        }
    }
    s->evo_any = 1;
}

/* v, or the largest lowered set-point the EV may still apply if that is larger: the counted draw m of
 * charger k on its used phases while a hold may be in effect. A merged staircase head counts the older
 * value up to the younger one's expiry, more than dlb.h's rule once the older one's own expiry has passed:
 * safe for capacity (it only holds chargers back), but counted as EV load on the least-loaded phase that
 * another charger's unbalance room is measured from it would let that charger rise further. What m counts
 * above the sure part (the head at hold_lo) is recorded in evo, and the unbalance room takes that phase
 * at evl - evo (path_scan, room_fill_one). */
static DLB_INLINE int64_t held_count(dlb_site *s, int32_t k, int64_t now, int64_t v, uint32_t used)
{
    int64_t m = v, sure = v;
    const charger_cold *cd = &s->kcold[k];
    for (int32_t i = 0; i < cd->n_holds; i++) {
        if (now < cd->hold_until[i]) {
            m = max64(m, cd->hold_sp[i]);
            sure = max64(sure, i == 0 ? cd->hold_lo : cd->hold_sp[i]);
        }
    }
    if (sure < m && s->unbal_path[s->chg[k].circuit]) {
        evo_add(s, k, m - sure, used);
    }
    return m;
}

/* held_count out of line (rare) */
DLB_NOINLINE static int64_t held_scan(dlb_site *s, int32_t k, int64_t now, int64_t v, uint32_t used)
{
    return held_count(s, k, now, v, used);
}

/* v, or the largest lowered set-point the EV may still apply if that is larger (held_count) */
static inline int64_t held_sp(dlb_site *s, int32_t k, const charger_state *st, int64_t now, int64_t v, uint32_t used)
{
    return now < st->hold_end ? held_scan(s, k, now, v, used) : v; /* else every hold has expired */
}

/* In session and not lost (as the last ingest left it): the energy over the elapsed interval, before
 * the new reading replaces the currents */
static inline void charger_energy(charger_state *st, const charger_in *kn, int64_t dt)
{
    if (st->counting) {
        st->delivered_mams += (int64_t)kn->esum * dt;
    }
}

/* stage 2 for a charger without demand, not lost: its currents are fixed loads (with stage 3: the sums) */
static DLB_INLINE void classify_nodemand(const charger_state *st, const dlb_charger *kc, charger_scratch *x,
                                         circuit_acc *cs)
{
    const int32_t *pmap = kc->phase_map;
    for (int i = 0; i < kc->phases; i++) {
        cs->evsum[pmap[i]] += st->meas[i];
        cs->fixed[pmap[i]] += st->meas[i];
    }
    classify_none(x, KIND_NODEMAND);
}

/* 2. classify a charger with demand (not lost): which site phases it loads (counted at m); with 3 the
 * sums of its circuit cs. The power lane's fixed and meas_d are not summed here: every charger adds to
 * it what it adds to its phases, so it is their sum (taken per circuit in dlb_step). drawing: a stored
 * current is known not 0. */
static DLB_INLINE void classify_demand(dlb_site *s, int32_t k, const charger_state *st, const dlb_charger *kc,
                                       charger_scratch *x, circuit_acc *cs, int64_t now, int64_t thr, int64_t cut,
                                       int drawing)
{
    const int32_t *pmap = kc->phase_map;
    const int64_t c0 = st->meas[0];
    x->kind = KIND_DEMAND;
    if (st->mode != 3) { /* conductor 0 alone (mode 3 only on a 3-phase charger) */
        const int32_t ph = pmap[0];
        const int64_t m = held_sp(s, k, st, now, max64(c0, st->sp), 1u << ph);
        x->used = 1u << ph;
        x->n_used = 1;
        x->drawn = (int32_t)c0; /* stored currents passed the range check: >= 0 */
        x->m = (int32_t)m;
        x->narrowed = (uint8_t)(c0 >= thr && follow_done(st, cut));
        cs->evsum[ph] += c0;
        cs->meas_d[ph] += m;
        if (kc->phases == 3) { /* conductors outside its counted set are fixed loads */
            const int64_t c1 = st->meas[1], c2 = st->meas[2];
            cs->evsum[pmap[1]] += c1;
            cs->evsum[pmap[2]] += c2;
            cs->fixed[pmap[1]] += c1;
            cs->fixed[pmap[2]] += c2;
        }
        return;
    }
    const int64_t c1 = st->meas[1], c2 = st->meas[2];
    if (!drawing && (c0 | c1 | c2) == 0) { /* a waiting EV: no conductor draws, no EV current; sp, held >= 0 */
        const int64_t m = held_sp(s, k, st, now, st->sp, 7u);
        x->used = 7u;
        x->narrowed = 0;
        x->n_used = 3;
        x->drawn = 0;
        x->m = (int32_t)m;
        cs->meas_d[0] += m;
        cs->meas_d[1] += m;
        cs->meas_d[2] += m;
        return;
    }
    cs->evsum[pmap[0]] += c0;
    cs->evsum[pmap[1]] += c1;
    cs->evsum[pmap[2]] += c2;
    /* Counted on the conductors that draw (thr) once the EV had time to use every conductor (after a
     * start or a phase switch: follow_done), so a slow ramp is never mistaken for fewer phases (e.g. a
     * 1-phase EV on a 3-phase charger); on all three when all three or none draw. */
    const int64_t drawn = max64(c0, max64(c1, c2));
    uint32_t narrowed = 0;
    if (min64(c0, min64(c1, c2)) >= thr) {
        narrowed = (uint32_t)follow_done(st, cut);
    } else if (drawn >= thr && follow_done(st, cut)) {
        const uint32_t active =
            (uint32_t)(c0 >= thr) | ((uint32_t)(c1 >= thr) << 1) | ((uint32_t)(c2 >= thr) << 2);
        int64_t dr = 0;
        uint32_t used = 0;
        int32_t n_used = 0;
        for (int i = 0; i < 3; i++) {
            if ((active >> i) & 1u) {
                used |= 1u << pmap[i];
                n_used++;
                dr = max64(dr, st->meas[i]);
            } else { /* conductors outside its counted set are fixed loads */
                cs->fixed[pmap[i]] += st->meas[i];
            }
        }
        const int64_t m = held_sp(s, k, st, now, max64(dr, st->sp), used);
        x->used = used;
        x->narrowed = 1;
        x->n_used = (uint8_t)n_used; /* <= 3 */
        x->drawn = (int32_t)dr;
        x->m = (int32_t)m;
        for (int i = 0; i < 3; i++) {
            if ((active >> i) & 1u) {
                cs->meas_d[pmap[i]] += m;
            }
        }
        return;
    }
    const int64_t m = held_sp(s, k, st, now, max64(drawn, st->sp), 7u); /* all three: a 3-phase map is a permutation */
    x->used = 7u;
    x->narrowed = (uint8_t)narrowed; /* 0 or 1 */
    x->n_used = 3;
    x->drawn = (int32_t)drawn;
    x->m = (int32_t)m;
    cs->meas_d[0] += m;
    cs->meas_d[1] += m;
    cs->meas_d[2] += m;
}

/* Stages 1-3 of charger k outside charger_pass's usual cases (any reading, a lost charger). Out of line:
 * the usual cases' loop keeps its registers; called by dlb_step, not by charger_pass, so that the two
 * frames do not add up on the stack (dlb.h). */
DLB_NOINLINE static void charger_general(dlb_site *s, int32_t k, const dlb_charger_input *ci, int64_t now,
                                         int64_t dt)
{
    charger_state *st = &s->ks[k];
    const dlb_charger *kc = &s->chg[k];
    charger_scratch *x = &s->kx[k];
    circuit_acc *cs = &s->ca[kc->circuit];
    charger_cold *cd = &s->kcold[k];
    /* charger_pass's usual cases leave t_last (= that step's now) to this function: every charger takes one
     * of the two in every step, so one not here in the previous step (not the first) took a usual case */
    if (cd->gen_step + 1u != s->n_steps) {
        st->t_last = now - dt;
    }
    cd->gen_step = s->n_steps;
    charger_energy(st, &st->in, dt);
    ingest_charger(s, k, st, ci, now);
    if (st->lost) {
        const int32_t *pmap = kc->phase_map;
        int64_t r = max64(st->sp, kc->failsafe_ma);
        for (int i = 0; i < kc->phases; i++) {
            cs->fixed[pmap[i]] += r;
            cs->alloc[pmap[i]] += st->sp; /* its output is its held set-point (stage 9 sums) */
        }
        classify_none(x, KIND_LOST);
    } else if (!is_demanding(st->state)) {
        classify_nodemand(st, kc, x, cs);
    } else {
        classify_demand(s, k, st, kc, x, cs, now, s->p.active_threshold_ma, now - s->p.follow_time_ms, 0);
    }
}

/* charger_pass's IK_DRAW charger (state st, its reading ingested) outside the fast cases there: a held
 * set-point may be in effect, or it is counted on the conductors that draw but not on all three (rare: out
 * of line) */
DLB_NOINLINE static void draw_general(dlb_site *s, const charger_state *st, int64_t now)
{
    const int32_t k = (int32_t)(st - s->ks);
    const dlb_charger *kc = &s->chg[k];
    classify_demand(s, k, &s->ks[k], kc, &s->kx[k], &s->ca[kc->circuit], now, s->p.active_threshold_ma,
                    now - s->p.follow_time_ms, 1);
}

/* the measured demand m of a charger with demand counted on conductor 0 alone (three = 0) or on all three
 * (mode 3: all three phases, as a 3-phase map is a permutation), added to its circuit's meas_d */
static inline void put_m(char *cb, const charger_in *kn, charger_scratch *x, int64_t m, int three)
{
    x->m = (int32_t)m;
    *cx_at(cb, kn->off[0], CX_MEAS_D) += m;
    if (three) {
        *cx_at(cb, kn->off[1], CX_MEAS_D) += m;
        *cx_at(cb, kn->off[2], CX_MEAS_D) += m;
    }
}

/* put_m with the held set-points of the charger of state st (held_sp) while one may be in effect. Out of
 * line, and the last call of an iteration of charger_pass: no value of the loop lives across it in a scratch
 * register */
DLB_NOINLINE static void put_held(dlb_site *s, const charger_state *st, int64_t now, int64_t v, charger_scratch *x,
                                  int three)
{
    const int64_t m = held_count(s, (int32_t)(st - s->ks), now, v, three ? 7u : st->in.used1);
    put_m((char *)s->ca, &st->in, x, m, three);
}

/* A fresh reading that changes the state of a charger in the usual case IK_WAIT or IK_DRAW (demanding, not
 * lost: in session) into another demanding state, without session data, its currents in range, is the usual
 * case of the new state once its key, iclass and state are updated as ingest_charger would: the session
 * logic leaves it in session, and lost stays 0 as in the usual cases (t_last: charger_general's fix-up).
 * Returns the new case (the reading is then charger_pass's), or IK_NONE with nothing changed (then
 * charger_general's). To IK_WAIT: the energy of the interval is counted here (counting: in session, not
 * lost), the stored currents and their sum become 0, and x->n_used = 0 (no mode) makes charger_pass's
 * IK_WAIT case write every field it sets (the last classification was another case's). To IK_DRAW: that
 * case writes every field but kind (DEMAND, as before) and counts the energy. Out of line: a few per step. */
DLB_NOINLINE static uint32_t restate(charger_state *st, charger_scratch *x, const dlb_charger_input *ci, int64_t dt,
                                     int64_t thr)
{
    charger_in *kn = &st->in;
    const uint32_t ik = kn->iclass;
    const int32_t state = ci->state;
    if (!(ci->fresh == 1 && (ik == IK_WAIT || ik == IK_DRAW) && is_demanding(state) && !ci->session_update)) {
        return IK_NONE;
    }
    const uint32_t u0 = (uint32_t)ci->current_ma[0], u1 = (uint32_t)ci->current_ma[1],
                   u2 = (uint32_t)ci->current_ma[2];
    if ((u0 | u1 | u2) > (uint32_t)DLB_MAX_CURRENT_MA) {
        return IK_NONE;
    }
    uint32_t to;
    if ((u0 | u1 | u2) == 0) {
        if (thr <= 0) { /* (active_threshold_ma) */
            return IK_NONE;
        }
        to = IK_WAIT;
        st->delivered_mams += (int64_t)kn->esum * dt;
        memset(st->meas, 0, sizeof(st->meas));
        kn->esum = 0;
        x->n_used = 0;
    } else if (state == DLB_STATE_CHARGING) {
        to = IK_DRAW;
    } else {
        return IK_NONE;
    }
    st->state = state;
    kn->key = reading_head(1, state);
    kn->iclass = (uint8_t)to;
    return to;
}

/* Stages 1-3 for chargers k0, k0 + 1, ..., k1 - 1 in their usual cases: ingest, classify, and the sums of
 * its circuit (meters ingested first). Returns the reading of the first charger from k0 on outside them
 * (chargers + k1 if none), for charger_general: no index is needed in the loop. Out of line: inlined,
 * its loop's live values grew dlb_step's frame past the stack bound (dlb.h). */
DLB_NOINLINE static const dlb_charger_input *charger_pass(dlb_site *s, const dlb_charger_input *chargers, int64_t now,
                                                          int64_t dt, int32_t k0, int32_t k1)
{
    charger_state *const ks = s->ks;
    charger_scratch *const kx = s->kx;
    char *const cb = (char *)s->ca;
    const int64_t thr = s->p.active_threshold_ma;
    const int64_t cut = now - s->p.follow_time_ms;
    /* follow_charging(st, cut) == ((uint64_t)on_since < ucut & last_switch <= cut): on_since = TNONE reads
     * as the largest unsigned, and with cut < 0 no stored time (>= 0) is at most cut */
    const uint64_t ucut = cut >= 0 ? (uint64_t)cut + 1u : 0u;
    /* driven by the reading pointer (no index: the rare paths find k from st): one induction step fewer */
    const dlb_charger_input *const ce = chargers + k1;
    charger_state *st = ks + k0;
    charger_scratch *x = kx + k0;
    for (const dlb_charger_input *ci = chargers + k0; ci != ce; ci++, st++, x++) {
        charger_in *kn = &st->in;
        /* The usual cases: a fresh reading of the stored state, without session data, from a charger
         * that is not lost (key and iclass say which). The stored state passed the range check; the
         * session logic of ingest_charger already ran for this state (a demanding state opened the
         * session, DISCONNECTED closed it, the others leave it), and with t_last = now and ok_since set
         * (it is while not lost) the ladder keeps lost at 0: only the currents (when in range; a negative
         * one reads as a large unsigned: the OR bounds each) and the time are new. The time is not
         * stored: charger_general sets t_last when it next runs (see there). */
        int64_t head;
        memcpy(&head, ci, sizeof(head));
        uint32_t ik = kn->iclass;
        if (head != kn->key && (ik = restate(st, x, ci, dt, thr)) == IK_NONE) {
            return ci;
        }
        if (ik == IK_WAIT) {
            uint64_t rest[2]; /* the currents and session_update */
            memcpy(rest, ci->current_ma, sizeof(rest));
            if ((rest[0] | rest[1]) != 0) {
                return ci;
            }
            /* A waiting EV (demanding), nothing drawn before or now: no energy, the stored currents (0)
             * stay, and with c0 = c1 = c2 = 0 classify_demand comes down to this. Its kind, used,
             * n_used, narrowed and drawn are what the last classification wrote (it was this case, by
             * charger_general or here: iclass is set by the one and kept by the other) unless stage 5
             * switched it to one phase (used 1 << phase_map[0] and n_used 1: this case's values for
             * mode 1, narrowed untouched). With thr > 0 (IK_WAIT's condition: narrowed 0) they are this
             * case's values for a mode of n_used, which is 1 or 3 as a mode is: a mode equal to n_used
             * needs no writes. */
            const int32_t mode = st->mode;
            const int64_t v = st->sp;
            if (mode != x->n_used) {
                const int three = mode == 3;
                x->drawn = 0;
                x->used = three ? 7u : kn->used1;
                x->narrowed = 0;
                x->n_used = (uint8_t)(1 + 2 * three);
                x->kind = KIND_DEMAND;
            }
            if (now < st->hold_end) {
                put_held(s, st, now, v, x, mode == 3);
                continue;
            }
            x->m = (int32_t)v;
            if (v != 0) {
                put_m(cb, kn, x, v, mode == 3);
            }
            continue;
        }
        /* the currents as unsigned: a negative one is above any range (and once in range, each is the
         * current: no sign to extend) */
        /* current_ma[2] in the low half, session_update in the high one (adjacent: one load) */
        const uint64_t c2su = c2_su(ci);
        const uint32_t u0 = (uint32_t)ci->current_ma[0], u1 = (uint32_t)ci->current_ma[1], u2 = (uint32_t)c2su;
        if (ik == IK_DRAW) {
            /* session_update != 0 puts the OR at or above 2^32; 0 currents wrap it to the largest value */
            if (((u0 | u1 | c2su) - 1u) >= (uint64_t)DLB_MAX_CURRENT_MA) {
                return ci;
            }
            const int64_t c0 = u0, c1 = u1, c2 = u2;
            /* charging and drawing before and now (the currents' OR in [1, max]): the key stays. Demanding
             * and not lost, it is in session (a demanding state opens it, only DISCONNECTED closes it):
             * counting. Then classify_demand with drawing = 1 in state CHARGING; its kind is DEMAND as
             * the last classification (charger_general's, which set iclass) left it: only stage 1 writes
             * kind. */
            st->delivered_mams += (int64_t)kn->esum * dt;
            memcpy(st->meas, ci->current_ma, sizeof(st->meas));
            if (now < st->hold_end) {
                kn->esum = (int32_t)(c0 + (kn->three ? c1 + c2 : 0));
                draw_general(s, st, now);
                continue;
            }
            const uint32_t follow = (uint32_t)((uint64_t)st->on_since < ucut) & (uint32_t)(st->last_switch <= cut);
            if (st->mode == 3) {
                /* counted on the conductors that draw (thr) once the EV had time to use every conductor,
                 * on all three when all three or none draw */
                const int64_t drawn = max64(c0, max64(c1, c2));
                uint32_t narrowed = follow;
                if (min64(c0, min64(c1, c2)) < thr) {
                    if (drawn >= thr && follow) {
                        kn->esum = (int32_t)(c0 + c1 + c2);
                        draw_general(s, st, now);
                        continue;
                    }
                    narrowed = 0;
                }
                const int64_t m = max64(drawn, st->sp);
                x->drawn = (int32_t)drawn;
                x->m = (int32_t)m;
                x->used = 7u;
                x->narrowed = (uint8_t)narrowed; /* 0 or 1 */
                x->n_used = 3;
                kn->esum = (int32_t)(c0 + c1 + c2);
                /* all three phases: a 3-phase map is a permutation */
                *cx_at(cb, kn->off[0], 0) += c0;
                *cx_at(cb, kn->off[0], CX_MEAS_D) += m;
                *cx_at(cb, kn->off[1], 0) += c1;
                *cx_at(cb, kn->off[1], CX_MEAS_D) += m;
                *cx_at(cb, kn->off[2], 0) += c2;
                *cx_at(cb, kn->off[2], CX_MEAS_D) += m;
            } else { /* conductor 0 alone (mode 3 only on a 3-phase charger) */
                const int64_t m = max64(c0, st->sp);
                x->drawn = (int32_t)c0;
                x->m = (int32_t)m;
                x->used = kn->used1;
                x->narrowed = (uint32_t)(c0 >= thr) & follow;
                x->n_used = 1;
                *cx_at(cb, kn->off[0], 0) += c0;
                *cx_at(cb, kn->off[0], CX_MEAS_D) += m;
                if (kn->three) { /* conductors outside its counted set are fixed loads */
                    *cx_at(cb, kn->off[1], 0) += c1;
                    *cx_at(cb, kn->off[1], CX_FIXED) += c1;
                    *cx_at(cb, kn->off[2], 0) += c2;
                    *cx_at(cb, kn->off[2], CX_FIXED) += c2;
                    kn->esum = (int32_t)(c0 + c1 + c2);
                } else {
                    kn->esum = (int32_t)c0;
                }
            }
            continue;
        }
        if (ik == IK_IDLE && !ci->session_update && (u0 | u1 | u2) <= (uint32_t)DLB_MAX_CURRENT_MA) {
            const int64_t c0 = u0, c1 = u1, c2 = u2;
            /* without demand: its currents are fixed loads (classify_nodemand). Its scratch is as the
             * last classification (charger_general's, which set iclass) left it, classify_none's: only
             * stage 1 writes kind, narrowed and drawn, and stage 5 the others for a charger it admits,
             * one with demand. */
            charger_energy(st, kn, dt);
            memcpy(st->meas, ci->current_ma, sizeof(st->meas));
            *cx_at(cb, kn->off[0], 0) += c0;
            *cx_at(cb, kn->off[0], CX_FIXED) += c0;
            if (kn->three) {
                *cx_at(cb, kn->off[1], 0) += c1;
                *cx_at(cb, kn->off[1], CX_FIXED) += c1;
                *cx_at(cb, kn->off[2], 0) += c2;
                *cx_at(cb, kn->off[2], CX_FIXED) += c2;
                kn->esum = (int32_t)(c0 + c1 + c2);
            } else {
                kn->esum = (int32_t)c0;
            }
            continue;
        }
        return ci;
    }
    return ce;
}

/* stage 4 detail: reclaim and probing (inlined, as admission_key is: called from stage 4's loops, their
 * frames made dlb_step's call chain deeper than the one dlb.h names) */
static DLB_INLINE int reclaim(dlb_site *s, int32_t k, int64_t mk, int64_t now, const int defer)
{
    charger_state *st = &s->ks[k];
    const dlb_charger *kc = &s->chg[k];
    const dlb_params *p = &s->p;
    if (st->sp > 0 && mk + p->reclaim_margin_ma < st->sp) {
        if (st->below_since == TNONE) {
            st->below_since = now;
        } else if (now - st->below_since >= p->reclaim_hold_ms) {
            int64_t cap = max64(kc->min_ma, ceil_grid(mk + p->reclaim_margin_ma, kc->step_ma));
            st->reclaim_cap = (int32_t)min64(cap, kc->max_ma);
            st->reclaimed_at = now;
            st->below_since = TNONE;
            stop_probe(s, k);
        }
    } else {
        st->below_since = TNONE;
        if (st->probing && now - st->probe_since >= p->reclaim_hold_ms) {
            stop_probe(s, k);
        }
    }
    if (st->reclaim_cap > 0 && now - st->reclaimed_at >= p->probe_interval_ms) {
        if (defer) {
            return 1;
        }
        meter_state *ms = &s->ms[kc->circuit];
        if (ms->probe_owner == DLB_NONE) {
            ms->probe_owner = k;
            st->reclaim_cap = 0;
            st->probing = 1;
            st->probe_since = now;
        }
    }
    return 0;
}

/* A probe claim deferred to the end of the blocked stages 1-4 (see dlb_step): charger k, in charger
 * order, takes its meter's probe if the stage-by-stage order would have found it free in k's stage 4.
 * There every stage 1 ran first, and stage 4 ran for the chargers before k: the probe is free now and
 * was then unless its one release of the pass (claims are all deferred, so a pass releases a meter's
 * probe at most once, and only its owner can) came in the stage 4 of a charger after k. */
static void probe_claim(dlb_site *s, int32_t k, int64_t now)
{
    charger_state *st = &s->ks[k];
    meter_state *ms = &s->ms[s->chg[k].circuit];
    if (ms->probe_owner == DLB_NONE && !(ms->rel_step == (uint32_t)s->n_steps && ms->rel_at > k)) {
        ms->probe_owner = k;
        st->reclaim_cap = 0;
        st->probing = 1;
        st->probe_since = now;
    }
}

static int64_t session_energy_wh(const dlb_site *s, int32_t k)
{
    return s->ks[k].delivered_mams * s->p.voltage_v / 3600000000LL;
}

/* stage 5 detail: the policy's part of the admission key (before clamping) */
static inline int64_t policy_pkey(const dlb_site *s, int32_t k, const charger_state *st, const dlb_charger *kc,
                                  int64_t now)
{
    const dlb_params *p = &s->p;
    if (p->policy == DLB_POLICY_FAIR || p->policy == DLB_POLICY_PRIORITY) {
        return (st->delivered_mams / kc->weight) >> 20;
    } else if (p->policy == DLB_POLICY_FIFO) {
        return st->arrival;
    } else if (p->policy == DLB_POLICY_EDF) {
        return st->departure != TNONE ? st->departure : KEY_PKEY_MAX;
    } /* DLB_POLICY_LLF */
    if (st->departure == TNONE || st->energy_need_wh < 0) {
        return KEY_PKEY_MAX;
    }
    int64_t remaining_wh = max64(0, st->energy_need_wh - session_energy_wh(s, k));
    int64_t rate_w = max64(1, (int64_t)kc->max_ma * kc->phases * p->voltage_v / 1000);
    return (st->departure - now) - fdiv(remaining_wh * HOUR_MS, rate_w) + LAXITY_OFFSET;
}

/* stage 5 detail: the admission key (smaller first) */
static DLB_INLINE uint64_t admission_key(const dlb_site *s, int32_t k, const charger_state *st,
                                         const dlb_charger *kc, int64_t drawn, int64_t now, uint8_t *tier_out)
{
    const dlb_params *p = &s->p;
    int on = st->sp > 0;
    int must_stay = on && now - st->on_since < p->min_on_ms;
    int64_t cls = p->policy == DLB_POLICY_PRIORITY ? 255 - kc->priority : 0;
    int32_t tier;
    int64_t pkey;
    if (must_stay) {
        tier = 0;
    } else if (st->reclaim_cap > 0 && drawn < p->active_threshold_ma) {
        tier = TIER_IDLE;
    } else if (!on && st->wait_since != TNONE && now - st->wait_since >= p->rotation_period_ms) {
        tier = TIER_STARVING;
    } else if (on && now - st->on_since < p->rotation_period_ms) {
        tier = TIER_STICKY;
    } else {
        tier = TIER_OTHER;
    }
    if (!must_stay && tier == TIER_STARVING) {
        pkey = st->wait_since;
    } else {
        pkey = policy_pkey(s, k, st, kc, now);
    }
    pkey = max64(0, min64(pkey, KEY_PKEY_MAX));
    *tier_out = (uint8_t)tier; /* TIER_* */
    return ((uint64_t)(must_stay ? 0 : 1) << 62) | ((uint64_t)cls << 54) | ((uint64_t)tier << KEY_PKEY_BITS) |
           (uint64_t)pkey;
}

/* stage 5 detail: a 3-phase charger that cannot get its minimum switches to one phase if it may and
 * its minimum fits there (then 1). Out of the admission loop: rare, and it keeps the loop's registers. */
DLB_NOINLINE static int switch_to_one(dlb_site *s, int32_t k, dlb_charger_output *o, int64_t now)
{
    const dlb_params *p = &s->p;
    charger_state *st = &s->ks[k];
    const dlb_charger *kc = &s->chg[k];
    charger_scratch *x = &s->kx[k];
    if (!(st->mode == 3 && s->kcold[k].switches < p->max_phase_switches &&
          (st->last_switch == TNONE || now - st->last_switch >= p->phase_switch_hold_ms))) {
        return 0;
    }
    uint32_t one = 1u << kc->phase_map[0];
    if (first_short(s, k, one, 1, kc->min_ma) >= 0) {
        return 0;
    }
    st->mode = 1;
    s->kcold[k].switches++;
    st->last_switch = now;
    s->kcold[k].up_since = TNONE;
    /* Its old draw stays counted on the old phases. On the new phase it was counted at m if that phase
     * was one of them, else at its draw there (a fixed load): only what it gets above that is new. */
    if (!(x->used & one)) {
        x->m = st->meas[0];
    }
    x->used = one;
    x->n_used = 1;
    o->phases = 1;
    o->flags |= DLB_CHARGER_SWITCHED;
    return 1;
}

/* stage 5 detail: the outputs of charger k, which cannot get its minimum: lane `failed` is short */
static inline void admit_fail(dlb_site *s, int32_t k, dlb_charger_output *o, int32_t failed)
{
    circuit_scratch *fcs = &s->cx[failed >> 2];
    const int32_t fl = failed & 3; /* failed % 4 (failed >= 0) */
    o->limit_circuit = failed >> 2;
    o->limit_lane = fl;
    fcs->status |= DLB_CIRCUIT_LIMITING; /* final: a paused charger's output stays */
    if (s->kx[k].tier & TIER_WAITING) { /* the usual failure: its state need not be read */
        o->reason = (fcs->bneg >> fl) & 1u ? DLB_REASON_OVERLOAD : DLB_REASON_SCARCITY;
        return;
    }
    const charger_state *st = &s->ks[k];
    if ((fcs->bneg >> fl) & 1u) {
        o->reason = DLB_REASON_OVERLOAD;
    } else if (st->sp > 0 && s->kx[k].tier == TIER_OTHER) {
        o->reason = DLB_REASON_ROTATION;
    } else {
        o->reason = DLB_REASON_SCARCITY;
    }
    if (st->sp != 0 || st->wait_since == TNONE) { /* else remember() changes nothing */
        s->key[s->nk + s->n_todo++] = (uint64_t)k;
    }
}

/* admit_fails' walk: the first short lane of circuit c's path for the amount (amount_n on the power lane,
 * n_used a function of used), -1 if none. Above c, its parent's answer to the same question (the memo
 * of a charger of the parent with these phases and amount: the same walk from the parent up) is read
 * from the parent's memo, or found and remembered there if short (the memo holds no fits: a remembered
 * answer is read as a short lane): the circuits of one parent share the walk above it. */
static DLB_INLINE int32_t admit_walk(dlb_site *s, int32_t c, uint32_t used, int64_t amount, int64_t amount_n)
{
    int32_t lane = short_lane(s, c, used, amount, amount_n);
    const int32_t depth = s->plen[c];
    if (lane >= 0 || depth < 2) {
        return lane;
    }
    const int32_t *const path = s->path + (size_t)c * DLB_MAX_DEPTH;
    circuit_scratch *par = &s->cx[path[1]];
    if (par->fail[used].gen == s->gen && par->fail[used].amount == amount) {
        return par->fail_lane[used];
    }
    for (int32_t i = 1; i < depth && lane < 0; i++) {
        lane = short_lane(s, path[i], used, amount, amount_n);
    }
    if (lane >= 0) {
        par->fail[used].gen = s->gen;
        par->fail[used].amount = amount;
        par->fail_lane[used] = lane;
    }
    return lane;
}

/* stage 5 detail: settle the chargers from pp on that cannot get their minimum, until one may (it fits, or
 * it may switch phases and the memo does not already say one phase is short too; the caller takes it
 * from there, the answer remembered if short). Nothing here changes run[], so one site gen holds
 * throughout and every answer is remembered: under scarcity most chargers fail on a remembered answer,
 * the rest of their leaf circuit and phases after one walk, and most of them stage 4 saw paused and
 * already waiting (their outputs need no state: see admit_fail). Those take the inner loop, of few live
 * values; the rest the outer one. A function of its own, so that both keep their values in registers.
 * Both read charger_scratch's copy of the configuration (circ16, min_ma, sw1), not dlb_charger. A charger that
 * may switch phases (sw1: one = 1 << phase_map[0]) fails here only if the memo already says that its minimum does not
 * fit on that phase alone either (switch_to_one would return 0: its other conditions have no side
 * effects); under scarcity most do. Returns where it stopped. */
DLB_NOINLINE static const kpair *admit_fails(dlb_site *s, dlb_charger_output *out, const kpair *pp,
                                             const kpair *const end)
{
    const charger_scratch *const kx = s->kx;
    circuit_scratch *const cx = s->cx;
    const uint64_t gen = s->gen;
    for (; pp < end; pp++) {
        int64_t k = pp->item;
        for (;;) {
            const charger_scratch *x = &kx[k];
            const circuit_scratch *lf = &cx[x->circ16];
            const uint32_t used = x->used, one = x->sw1;
            if (!(x->tier & TIER_WAITING) || lf->fail[used].gen != gen || lf->fail[used].amount != x->min_ma) {
                break;
            }
            const int32_t lane = lf->fail_lane[used];
            if (lane < 0 || (one != 0 && !(lf->fail[one].gen == gen && lf->fail[one].amount == x->min_ma &&
                                           lf->fail_lane[one] >= 0))) {
                break;
            }
            dlb_charger_output *o = &out[k];
            circuit_scratch *fcs = &cx[lane >> 2];
            o->limit_circuit = lane >> 2;
            o->limit_lane = lane & 3;
            fcs->status |= DLB_CIRCUIT_LIMITING;
            o->reason = (fcs->bneg >> (lane & 3)) & 1u ? DLB_REASON_OVERLOAD : DLB_REASON_SCARCITY;
            if (++pp == end) {
                return pp;
            }
            k = pp->item;
        }
        const charger_scratch *x = &kx[k];
        circuit_scratch *leaf = &cx[x->circ16];
        const uint32_t used = x->used, one = x->sw1;
        int32_t lane;
        if (leaf->fail[used].gen == gen && leaf->fail[used].amount == x->min_ma) {
            lane = leaf->fail_lane[used];
        } else {
            const int64_t amount = x->min_ma;
            lane = admit_walk(s, x->circ16, used, amount, amount * x->n_used);
            if (lane < 0) {
                return pp; /* it fits: the caller takes it */
            }
            leaf->fail[used].gen = gen;
            leaf->fail[used].amount = amount;
            leaf->fail_lane[used] = lane;
        }
        if (lane < 0 || (one != 0 && !(leaf->fail[one].gen == gen && leaf->fail[one].amount == x->min_ma &&
                                       leaf->fail_lane[one] >= 0))) {
            return pp;
        }
        admit_fail(s, (int32_t)k, &out[k], lane);
    }
    return pp;
}

/* stage 5 detail: admit the chargers from pp on while each has no remembered answer (that would be a short
 * lane) and fits (admit_take: taken at once), appending them to adm[] (*n_adm of them so far); stops at
 * the first that does not, with admit_take's answer for it in *r (-1 if it was not asked). The usual
 * admission, in a function of its own without calls, whose loop keeps its values in registers. */
DLB_NOINLINE static const kpair *admit_run(dlb_site *s, dlb_charger_output *out, const kpair *pp,
                                           const kpair *const end, int32_t *n_adm, int32_t *r)
{
    charger_scratch *const kx = s->kx;
    const circuit_scratch *const cx = s->cx;
    int32_t *const adm = s->adm;
    int32_t n = *n_adm;
    *r = -1;
    for (; pp < end; pp++) {
        const int32_t k = (int32_t)pp->item;
        charger_scratch *x = &kx[k];
        const circuit_scratch *leaf = &cx[x->circ16];
        const uint32_t used = x->used;
        if (leaf->fail[used].gen == s->gen && leaf->fail[used].amount == x->min_ma) {
            break;
        }
        const int32_t t = admit_take(s, x->circ16, used, x->min_ma, x->min_ma * (int64_t)x->n_used);
        if (t != -2) {
            *r = t;
            break;
        }
        dlb_charger_output *o = &out[k];
        o->reason = DLB_REASON_NONE; /* until stages 7-8 name one */
        o->limit_circuit = DLB_NONE;
        o->limit_lane = DLB_NONE;
        o->flags |= DLB_CHARGER_ADMITTED;
        adm[n++] = k;
    }
    *n_adm = n;
    return pp;
}

/* stage 5 detail: charger k's fit is remembered for this run[] (a short lane, see admit_take) */
static inline int remembered(const dlb_site *s, int32_t k)
{
    const charger_scratch *x = &s->kx[k];
    const circuit_scratch *leaf = &s->cx[x->circ16];
    const uint32_t used = x->used;
    return leaf->fail[used].gen == s->gen && leaf->fail[used].amount == x->min_ma;
}


/* Stage 5's quick path (admit_quick), for a site whose only root is circuit 0 with run[] >= 0 on every lane
 * (the usual case), exact for any input:
 * - Admissions in batches (admit_batch, then admit_flush): the chargers in turn while the root can take
 *   each, tested against the root's run[] alone (in registers), each minimum added to its own circuit's
 *   adm_acc (per used-phase mask); admit_flush then applies the sums to run[] by decreasing circuit index
 *   (children before their parent; each circuit once, its sums passed on to its parent's adm_acc), or for
 *   a small batch along each charger's path. Every amount is > 0 (min_ma >= 1;
 *   an eligible charger uses a phase, n_used >= 1), so at each circuit a charger's test (run[] minus the
 *   minima taken there before it, minus its own, >= 0 on each of its lanes, as admit_take's) reads run[]
 *   at the start minus a prefix of the batch's sum on that lane: if every lane a charger of the batch uses
 *   ends >= 0, each fitted in turn, and run[] ends as after their takes one by one. If one ends short, the
 *   batch is undone (admit_undo) and the sequential loop (admit_seq) takes over from its start.
 * - Failures at the root (admit_fails_root): adm_low holds lower bounds of run[] over every circuit below
 *   the root (its phase lanes [0], its power lane [1]; run[] only goes down in stage 5, so each take
 *   lowers them to the new values on its path). A charger whose minimum is at most adm_low[0] and its power
 *   amount at most adm_low[1] finds no short lane below the root: its first short lane is the root's, and
 *   it fits if the root has none. So most failures cost their outputs and a mask of the root's lanes short
 *   for their minimum (computed once per amount); the plainest (waiting, no phase switch to ask, the
 *   same minimum, no power lane short for 3 times it) go through admit_fails_wide's loop, which writes
 *   their outputs from a table per used-phase mask. The usual failures not covered go to admit_fails. */

/* admit_flush's step at a circuit: the sums acc of the chargers below it (zeroed) taken from
 * run[]; returns the lanes the batch uses there that end short (< 0 if one does: its sum > 0 there; on a
 * lane it does not use, run[] may be < 0 already), and the lane sums in *sum (0..2 phases, 3 power; 0 on
 * every lane if no charger of the batch is below it: then run[] is left as it is and 0 returned). The
 * power lane's sum is the phases' sum: a charger's power amount is its minimum times n_used, the number of
 * phases in its used mask (stage 2 sets the two together, and a phase switch both), so it adds to the
 * power lane what it adds to its phases. */
static DLB_INLINE int64_t flush_one(int64_t *acc, int64_t *run, int64_t *sum)
{
    /* lane sums from the per-mask sums: phase p is used by the masks with bit p */
    const int64_t a37 = acc[3] + acc[7], a56 = acc[5] + acc[6];
    const int64_t s0 = acc[1] + acc[5] + a37, s1 = acc[2] + acc[6] + a37, s2 = acc[4] + acc[7] + a56;
    const int64_t s3 = s0 + s1 + s2;
    sum[0] = s0;
    sum[1] = s1;
    sum[2] = s2;
    sum[3] = s3;
    if (s3 == 0) { /* every amount is > 0: no charger of the batch below it */
        return 0;
    }
    for (int i = 0; i < ADM_ACC; i++) {
        acc[i] = 0;
    }
    const int64_t t0 = run[0] - s0, t1 = run[1] - s1, t2 = run[2] - s2, t3 = run[DLB_LANE_POWER] - s3;
    run[0] = t0;
    run[1] = t1;
    run[2] = t2;
    run[DLB_LANE_POWER] = t3;
    if ((t0 | t1 | t2 | t3) < 0) { /* short only on a lane the batch uses here (s3 > 0) */
        return (s0 != 0 ? t0 : 0) | (s1 != 0 ? t1 : 0) | (s2 != 0 ? t2 : 0) | t3;
    }
    return 0;
}

/* apply the batch's sums (adm_acc; its chargers adm[n0..adm_n)) to run[]; returns < 0 if a lane the batch
 * uses ends short. A large batch: every circuit, by decreasing index (a parent comes before its children:
 * each circuit's sums are complete when it is reached), its sums passed on to its parent's adm_acc; no list
 * of the circuits touched to keep. A small one (fewer than nc / 2 chargers): each charger's circuit not yet
 * flushed, its sums taken along its whole path (run[] only goes down, so a lane short after any take of a
 * sum > 0 on it ends short, and the last such take sees its final value). */
DLB_NOINLINE static int64_t admit_flush(dlb_site *s, int32_t n0)
{
    circuit_scratch *const cx = s->cx;
    int64_t *const accs = s->adm_acc;
    const int ok = s->adm_lowok; /* else the bounds are left to be found later (admit_low) ... */
    int64_t bad = 0, lph = ok ? s->adm_low[0] : INF, lpw = ok ? s->adm_low[1] : INF, sum[4];
    if (2 * (s->adm_n - n0) < s->nc) {
        for (int32_t i = n0; i < s->adm_n; i++) {
            const int32_t k = s->adm[i];
            const int32_t c = s->kx[k].circ16;
            int64_t *acc = accs + (size_t)c * ADM_ACC;
            if (acc[s->kx[k].used] == 0) { /* flushed with an earlier charger of its circuit (its sum was > 0) */
                continue;
            }
            int64_t *run = cx[c].run;
            bad |= flush_one(acc, run, sum);
            int64_t t0 = run[0], t1 = run[1], t2 = run[2], t3 = run[DLB_LANE_POWER];
            const int32_t *const path = s->path + (size_t)c * DLB_MAX_DEPTH;
            const int32_t depth = s->plen[c];
            for (int32_t d = 1; d < depth; d++) { /* its ancestors: the sums taken at each */
                /* the circuit below (path[d - 1], its run[] in t) is below the root: adm_low (found
                 * whatever ok says: without it, not read) */
                lph = min64(lph, min64(t0, min64(t1, t2)));
                lpw = min64(lpw, t3);
                run = cx[path[d]].run;
                t0 = run[0] - sum[0];
                t1 = run[1] - sum[1];
                t2 = run[2] - sum[2];
                t3 = run[DLB_LANE_POWER] - sum[3];
                run[0] = t0;
                run[1] = t1;
                run[2] = t2;
                run[DLB_LANE_POWER] = t3;
                bad |= (sum[0] != 0 ? t0 : 0) | (sum[1] != 0 ? t1 : 0) | (sum[2] != 0 ? t2 : 0) | t3;
            }
        }
    } else {
        const int32_t *const parent = s->path + DLB_MAX_DEPTH + 1; /* parent[c * DLB_MAX_DEPTH], c >= 1 */
        for (int32_t c = s->nc - 1; c >= 1; c--) {
            int64_t *run = cx[c].run;
            const int64_t b = flush_one(accs + (size_t)c * ADM_ACC, run, sum);
            if (sum[3] == 0) { /* no charger of the batch below it (every power amount is > 0) */
                if (!ok) { /* ... or, here, found over every circuit below the root */
                    lph = min64(lph, min64(run[0], min64(run[1], run[2])));
                    lpw = min64(lpw, run[DLB_LANE_POWER]);
                }
                continue;
            }
            bad |= b;
            lph = min64(lph, min64(run[0], min64(run[1], run[2])));
            lpw = min64(lpw, run[DLB_LANE_POWER]);
            int64_t *pa = accs + (size_t)parent[(size_t)(c - 1) * DLB_MAX_DEPTH] * ADM_ACC;
            pa[1] += sum[0];
            pa[2] += sum[1];
            pa[4] += sum[2];
        }
        bad |= flush_one(accs, cx[0].run, sum); /* the root */
        s->adm_lowok = 1;
    }
    s->adm_low[0] = lph;
    s->adm_low[1] = lpw;
    return bad;
}

/* undo a flushed batch adm[n0..n): run[] of each path and the ADMITTED flags (the other
 * outputs it wrote are read only for admitted chargers, or rewritten). adm_low stays a lower bound. */
DLB_NOINLINE static void admit_undo(dlb_site *s, dlb_charger_output *out, int32_t n0, int32_t n)
{
    for (int32_t i = n0; i < n; i++) {
        const int32_t k = s->adm[i];
        const int32_t c = s->kx[k].circ16;
        const int64_t a = s->kx[k].min_ma;
        out[k].flags &= ~DLB_CHARGER_ADMITTED;
        path_subtract(s, s->path + (size_t)c * DLB_MAX_DEPTH, s->plen[c], s->kx[k].used, -a, -a * s->kx[k].n_used);
    }
}

/* the outputs of a charger admitted (x->ideal is not written in stage 5: stage 6 writes it for every
 * admitted charger, fill_take or dlb_step's loop for the other policies, before anything reads it) */
static inline void admitted_outputs(dlb_charger_output *o)
{
    o->reason = DLB_REASON_NONE; /* until stages 7-8 name one */
    o->limit_circuit = DLB_NONE;
    o->limit_lane = DLB_NONE;
    o->flags |= DLB_CHARGER_ADMITTED;
}

/* admit_batch's first loop (see there), in two copies by a constant: same, whether every charger's min_ma is
 * the same (adm_cfg: then it is not read per charger) */
static DLB_INLINE const kpair *batch_first(dlb_site *s, dlb_charger_output *out, const kpair *pp,
                                           const kpair *const end, int32_t **app, int64_t g, int same)
{
    const charger_scratch *const kx = s->kx;
    int64_t *const accs = s->adm_acc, *const bs = s->adm_bsum;
    const int64_t a_all = kx[0].min_ma; /* (nk >= 1: there is a charger at pp) */
    int32_t *ap = *app;
    for (; pp < end; pp++) {
        const int64_t k = pp->item; /* a charger's index: 0 <= k < nk */
        const charger_scratch *x = &kx[k];
        const int64_t a = same ? a_all : x->min_ma;
        g -= a;
        if (g < 0) {
            break;
        }
        const uint32_t used = x->used;
        bs[used] += a;
        accs[(size_t)x->circ16 * ADM_ACC + used] += a;
        admitted_outputs(&out[k]);
        *ap++ = (int32_t)k;
    }
    *app = ap;
    return pp;
}

/* the first pass of a batch from pp (see above): stops at the first charger the root cannot take (a lane
 * it does not use passes: the root's lanes start >= 0 and stay so). Returns where it stopped; the
 * chargers taken appended to adm[0..adm_n), their minima summed in adm_acc. */
DLB_NOINLINE static const kpair *admit_batch(dlb_site *s, dlb_charger_output *out, const kpair *pp,
                                             const kpair *const end)
{
    const charger_scratch *const kx = s->kx;
    int32_t *ap = s->adm + s->adm_n;
    int64_t *const accs = s->adm_acc, *const bs = s->adm_bsum;
    for (int u = 0; u < 8; u++) {
        bs[u] = 0;
    }
    const int64_t *const rr = s->cx[0].run;
    /* First while the minima so far sum to at most g, the root's lowest phase lane and a third of its power
     * lane: each phase lane's sum is at most that sum, the power lane's (a charger's power amount is its
     * minimum times n_used <= 3) at most three times it. One counter. */
    const int64_t g = min64(min64(rr[0], rr[1]), min64(rr[2], rr[DLB_LANE_POWER] / 3));
    pp = (s->adm_cfg & 4u) ? batch_first(s, out, pp, end, &ap, g, 1) : batch_first(s, out, pp, end, &ap, g, 0);
    /* Then each charger tested on the root's lanes as admit_take does, from what the batch left there (its
     * power lane's sum the phases' sum, see flush_one). */
    const int64_t b37 = bs[3] + bs[7], b56 = bs[5] + bs[6];
    const int64_t s0 = bs[1] + bs[5] + b37, s1 = bs[2] + bs[6] + b37, s2 = bs[4] + bs[7] + b56;
    int64_t r0 = rr[0] - s0, r1 = rr[1] - s1, r2 = rr[2] - s2, r3 = rr[DLB_LANE_POWER] - (s0 + s1 + s2);
    for (; pp < end; pp++) {
        const int32_t k = (int32_t)pp->item;
        const charger_scratch *x = &kx[k];
        const uint32_t used = x->used;
        const int64_t *const lm = lane_mask[used];
        const int64_t a = x->min_ma;
        const int64_t a0 = a & lm[0], a1 = a & lm[1], a2 = a & lm[2], an = a * x->n_used;
        r0 -= a0;
        r1 -= a1;
        r2 -= a2;
        r3 -= an;
        if ((r0 | r1 | r2 | r3) < 0) {
            break;
        }
        accs[(size_t)x->circ16 * ADM_ACC + used] += a;
        admitted_outputs(&out[k]);
        *ap++ = k;
    }
    s->adm_n = (int32_t)(ap - s->adm);
    return pp;
}

/* stage 5 detail: the outputs of a charger that fails on lane `failed` (admit_fail out of the loops) */
DLB_NOINLINE static void admit_fail_cold(dlb_site *s, int32_t k, dlb_charger_output *o, int32_t failed)
{
    admit_fail(s, k, o, failed);
}

/* admit_fails_root's usual case, in a loop of its own with few live values (no spills), called where
 * admit_fails_root stopped with adm_failed -3 (the charger at pp is such a failure, so at least one is
 * settled): from pp on, the chargers of minimum a (wide for a: no power lane short for it, whatever
 * n_used) whose used phases meet m3 (the root's phase lanes short for a), that stage 4 saw waiting and
 * that switch_to_one would not switch (as admit_fails_root decides: it cannot switch phases, or the
 * root's power lane is short for a (bit 3 of ms clear), or its one phase is) fail at the root on the
 * lowest short lane of m3 & used. Stops at the first charger not known to be such a failure
 * (admit_fails_root takes it), returns where it stopped. */
/* admit_fails_wide's loop, in copies by three constants: chk, whether a charger's min_ma may differ from a
 * (not if every charger's is the same: adm_cfg); sw, whether a charger that may switch phases is to be
 * asked (sw1); one, whether m3 is a single lane (then every such failure has the outputs of adm_rc[m3]
 * and adm_ll[m3], kept in registers: the lowest lane of m3 & used is m3's). Without chk it reads neither
 * min_ma nor its place. */
static DLB_INLINE const kpair *fails_wide_loop(const dlb_site *s, dlb_charger_output *out, const kpair *pp,
                                               const kpair *const end, int32_t a, uint32_t m3, int chk, int sw,
                                               int one)
{
    const charger_scratch *const kx = s->kx;
    const uint32_t nm3 = ~m3 & 7u;
    const uint64_t rc_m3 = s->adm_rc[m3];
    const int32_t ll_m3 = s->adm_ll[m3];
    for (; pp < end; pp++) {
        const int64_t k = pp->item;
        const charger_scratch *x = &kx[k];
        const uint32_t shortm = m3 & x->used;
        if ((chk && x->min_ma != a) || shortm == 0 || !(x->tier & TIER_WAITING) || (sw && (x->sw1 & nm3) != 0)) {
            break; /* (sw1 & nm3: it can switch phases and its one phase is not short at the root) */
        }
        /* reason and limit_circuit in one store (adjacent in dlb_charger_output) */
        dlb_charger_output *o = &out[k];
        memcpy((unsigned char *)o + offsetof(dlb_charger_output, reason), one ? &rc_m3 : &s->adm_rc[shortm],
               sizeof s->adm_rc[0]);
        o->limit_lane = one ? ll_m3 : s->adm_ll[shortm];
    }
    return pp;
}

DLB_NOINLINE static const kpair *admit_fails_wide(dlb_site *s, dlb_charger_output *out, const kpair *pp,
                                                  const kpair *const end, int64_t a, uint32_t ms)
{
    const uint32_t m3 = ms & 7u; /* ms: m3 (not 0: the charger at pp fails on it), and bit 3 if a charger
                                  * that may switch phases is to be asked */
    if (m3 != s->adm_m3) {
        s->adm_m3 = m3;
        for (uint32_t u = 1; u < 8; u++) {
            const int32_t ln = lowest_lane[(m3 & u) | 8u]; /* 3 if m3 & u == 0 (then unused) */
            const int32_t rc[2] = {s->adm_rsn[ln], 0};    /* reason, limit_circuit */
            memcpy(&s->adm_rc[u], rc, sizeof rc);
            s->adm_ll[u] = ln;
        }
    }
    s->cx[0].status |= DLB_CIRCUIT_LIMITING; /* the charger at pp fails at the root (see above) */
    const int32_t a32 = (int32_t)a; /* a min_ma */
    const int sw = (ms & 8u) && (s->adm_cfg & 2u); /* no charger can switch phases: none to ask */
    const int chk = !(s->adm_cfg & 4u);            /* not every min_ma is a */
    if ((m3 & (m3 - 1u)) == 0) {
        if (!chk) {
            return sw ? fails_wide_loop(s, out, pp, end, a32, m3, 0, 1, 1)
                      : fails_wide_loop(s, out, pp, end, a32, m3, 0, 0, 1);
        }
        return sw ? fails_wide_loop(s, out, pp, end, a32, m3, 1, 1, 1) : fails_wide_loop(s, out, pp, end, a32, m3, 1, 0, 1);
    }
    if (!chk) {
        return sw ? fails_wide_loop(s, out, pp, end, a32, m3, 0, 1, 0) : fails_wide_loop(s, out, pp, end, a32, m3, 0, 0, 0);
    }
    return sw ? fails_wide_loop(s, out, pp, end, a32, m3, 1, 1, 0) : fails_wide_loop(s, out, pp, end, a32, m3, 1, 0, 0);
}

/* adm_low from every run[] below the root as it is (the bounds not found yet this step) */
DLB_NOINLINE static void admit_low(dlb_site *s)
{
    int64_t lph = INF, lpw = INF;
    for (int32_t c = 1; c < s->nc; c++) {
        const int64_t *run = s->cx[c].run;
        lph = min64(lph, min64(run[0], min64(run[1], run[2])));
        lpw = min64(lpw, run[DLB_LANE_POWER]);
    }
    s->adm_low[0] = lph;
    s->adm_low[1] = lpw;
    s->adm_lowok = 1;
}

/* settle the chargers from pp on that fail at the root (see above) and that stage 4 saw paused and already
 * waiting (their outputs need no state: see admit_fail), until one that is not known to be such a failure:
 * s->adm_failed = -1 if it fits, -2 if adm_low does not cover it, else its short lane (the root's: its
 * lane id) minus 8 if its minimum fits the root on its first conductor's phase (switch_to_one
 * decides) or it is not waiting (admit_fail). Returns where it stopped. A 3-phase charger whose one phase
 * is short at the root too fails: switch_to_one would return 0 (its other tests have no side effects).
 * The caller has found adm_low (adm_lowok). */
DLB_NOINLINE static const kpair *admit_fails_root(dlb_site *s, dlb_charger_output *out, const kpair *pp,
                                                  const kpair *const end)
{
    const charger_scratch *const kx = s->kx;
    circuit_scratch *const root = &s->cx[0];
    const int64_t r3 = root->run[DLB_LANE_POWER];
    const kpair *const from = pp;
    int64_t ca = -1;  /* the amount m3, lim and wide are for (none yet: every min_ma >= 1) */
    uint32_t m3 = 0;  /* the root's phase lanes short for ca */
    int64_t lim = -1; /* adm_low[1] if ca <= adm_low[0] (no phase lane below the root short for it), else -1 */
    int wide = 0;     /* 3 * ca <= lim and <= r3: no power lane short for ca times any n_used (<= 3) */
    int32_t res = -1;
    for (; pp < end; pp++) {
        const int32_t k = (int32_t)pp->item;
        const charger_scratch *x = &kx[k];
        const int64_t a = x->min_ma;
        if (a != ca) {
            const int64_t *rr = root->run;
            ca = a;
            m3 = (uint32_t)(rr[0] < a) | ((uint32_t)(rr[1] < a) << 1) | ((uint32_t)(rr[2] < a) << 2);
            lim = a <= s->adm_low[0] ? s->adm_low[1] : -1;
            wide = 3 * a <= lim && 3 * a <= r3;
        }
        uint32_t shortm = m3 & x->used;
        if (!wide) {
            const int64_t an = a * x->n_used;
            if (an > lim) { /* not covered (an >= 1 > -1): a lane below the root may be short */
                res = -2;
                break;
            }
            shortm |= (uint32_t)(r3 < an) << 3;
        }
        if (shortm == 0) {
            res = -1;
            break;
        }
        const int32_t lane = lowest_lane[shortm]; /* circuit 0: the lane id is the lane */
        /* (sw1 != 0: it can switch phases; sw1 & m3 == 0: its one phase, phase_map[0], is not short) */
        if ((x->sw1 != 0 && (x->sw1 & m3) == 0 && r3 >= a) || !(x->tier & TIER_WAITING)) {
            res = lane - 8;
            break;
        }
        if (wide) { /* admit_fails_wide settles it and the like after it */
            s->adm_wa = a;
            s->adm_ms = m3 | (uint32_t)(m3 != 7u && r3 >= a) << 3; /* see there */
            res = -3;
            break;
        }
        dlb_charger_output *o = &out[k];
        o->limit_circuit = 0;
        o->limit_lane = lane;
        o->reason = s->adm_rsn[lane];
    }
    if (pp != from) { /* each charger before pp failed at the root */
        root->status |= DLB_CIRCUIT_LIMITING;
    }
    s->adm_failed = res;
    return pp;
}

/* a batch from pp (the first charger the root cannot take ends it): returns where it stopped, NULL if it
 * was undone (adm[] and adm_n as before it) */
static const kpair *admit_take_batch(dlb_site *s, dlb_charger_output *out, const kpair *pp, const kpair *const end)
{
    const int32_t n0 = s->adm_n;
    const kpair *q = admit_batch(s, out, pp, end);
    if (q == pp) {
        return q;
    }
    if (admit_flush(s, n0) < 0) {
        admit_undo(s, out, n0, s->adm_n);
        s->adm_n = n0;
        return NULL;
    }
    s->gen++;
    return q;
}

/* adm_cfg (see dlb_site), found by dlb_init: the configuration does not change after it */
DLB_NOINLINE static void admit_cfg(dlb_site *s)
{
    uint32_t cfg = 1u | 4u;
    for (int32_t k = 0; k < s->nk; k++) {
        cfg |= s->chg[k].can_switch_phases ? 2u : 0u;
        cfg &= s->chg[k].min_ma == s->chg[0].min_ma ? ~0u : ~4u;
    }
    s->adm_cfg = cfg;
}

/* stage 5's quick path (see above) from the first charger, the admitted ones counted in adm_n: returns the
 * index of the charger from which admit_seq settles the rest (a batch was undone there), n_items if none */
DLB_NOINLINE static int32_t admit_quick(dlb_site *s, dlb_charger_output *out, int64_t now, int32_t n_items)
{
    const kpair *pp = s->pairs, *const end = s->pairs + n_items;
    s->adm_lowok = 0; /* the lower bounds below the root: found when first needed (admit_low) */
    /* a failure's reason per root lane (bneg does not change in stage 5) */
    for (int ln = 0; ln < DLB_LANES; ln++) {
        s->adm_rsn[ln] = (s->cx[0].bneg >> ln) & 1u ? DLB_REASON_OVERLOAD : DLB_REASON_SCARCITY;
    }
    s->adm_m3 = 8; /* adm_rc and adm_ll are for no m3 yet */
    int fits = 0; /* admit_fails_root found that pp fits */
    while (pp < end) {
        /* a batch, unless this charger's answer is remembered (a short lane, exact: it cannot fit) */
        if (!remembered(s, (int32_t)pp->item)) {
            const kpair *q = admit_take_batch(s, out, pp, end);
            if (q == NULL) {
                return (int32_t)(pp - s->pairs);
            }
            if (q != pp) {
                pp = q;
                fits = 0;
                if (pp == end) {
                    break;
                }
            }
        }
        int32_t failed = -2; /* if it fits, the batch took it: else (never) settled the general way below */
        if (!fits) {
            if (!s->adm_lowok) { /* admit_fails_root reads them (called here: its frame stays small) */
                admit_low(s);
            }
            pp = admit_fails_root(s, out, pp, end);
            failed = s->adm_failed;
            while (failed == -3) { /* the usual failures, in admit_fails_wide's loop (not called from
                                    * admit_fails_root: its frame would deepen the stack's deepest chain) */
                pp = admit_fails_wide(s, out, pp, end, s->adm_wa, s->adm_ms);
                if (pp == end) {
                    break;
                }
                pp = admit_fails_root(s, out, pp, end);
                failed = s->adm_failed;
            }
            if (pp == end) {
                break;
            }
            if (failed == -1) { /* it fits: the next batch starts with it */
                fits = 1;
                continue;
            }
            if (failed == -2) { /* not covered by adm_low: the memo's loop settles the usual failures */
                pp = admit_fails(s, out, pp, end);
                if (pp == end) {
                    break;
                }
                /* it stopped at a charger that fits (no answer remembered: the next batch takes it) or
                 * that may switch phases (its short lane remembered: settled below) */
                if (!remembered(s, (int32_t)pp->item)) {
                    fits = 1;
                    continue;
                }
            }
        }
        fits = 0;
        const int32_t k = (int32_t)pp->item;
        charger_scratch *x = &s->kx[k];
        dlb_charger_output *o = &out[k];
        if (failed == -2) {
            failed = first_short(s, k, x->used, x->n_used, x->min_ma);
        } else if (failed < -2) {
            failed += 8;
        }
        if (failed < 0 || (x->sw1 != 0 && switch_to_one(s, k, o, now))) {
            run_take(s, k, x->used, x->n_used, x->min_ma); /* on its new phase if it switched */
            const int32_t *const path = s->path + (size_t)x->circ16 * DLB_MAX_DEPTH;
            for (int32_t i = 0; i < s->plen[x->circ16] - 1 && s->adm_lowok; i++) { /* adm_low below the root */
                const int64_t *run = s->cx[path[i]].run;
                s->adm_low[0] = min64(s->adm_low[0], min64(run[0], min64(run[1], run[2])));
                s->adm_low[1] = min64(s->adm_low[1], run[DLB_LANE_POWER]);
            }
            o->reason = DLB_REASON_NONE;
            o->limit_circuit = DLB_NONE;
            o->limit_lane = DLB_NONE;
            o->flags |= DLB_CHARGER_ADMITTED;
            s->adm[s->adm_n++] = k;
        } else {
            admit_fail_cold(s, k, o, failed);
        }
        pp++;
    }
    return n_items;
}

/* stage 5 detail: the sequential loop from pairs[from] to pairs[adm_items] (any site), adm_n admitted
 * before (outputs adm_out, time adm_now): admit_run's admissions, admit_fails' failures, this loop the
 * rest (a miss's answer, a phase switch) */
DLB_NOINLINE static int32_t admit_seq(dlb_site *s, int32_t from)
{
    dlb_charger_output *const out = s->adm_out;
    const int64_t now = s->adm_now;
    const kpair *pp = s->pairs + from, *const end = s->pairs + s->adm_items;
    int32_t n_adm = s->adm_n, r;
    pp = admit_run(s, out, pp, end, &n_adm, &r);
    while (pp < end) {
        const int32_t k = (int32_t)pp->item;
        charger_scratch *x = &s->kx[k];
        const uint32_t used = x->used;
        dlb_charger_output *o = &out[k];
        int32_t failed;
        if (remembered(s, k)) {
            failed = s->cx[x->circ16].fail_lane[used];
        } else if (r == -1) {
            failed = admit_miss(s, x->circ16, used, x->min_ma, x->min_ma * (int64_t)x->n_used);
        } else {
            failed = admit_short(s, x->circ16, r, used, x->min_ma, x->min_ma * (int64_t)x->n_used);
        }
        if (failed < 0 || (x->sw1 != 0 && switch_to_one(s, k, o, now))) {
            if (failed >= 0) {
                run_take(s, k, x->used, x->n_used, x->min_ma); /* on its new phase */
            } /* else a remembered fit: a minimum of 0 after a phase switch (run_take left the gen) */
            o->reason = DLB_REASON_NONE;
            o->limit_circuit = DLB_NONE;
            o->limit_lane = DLB_NONE;
            o->flags |= DLB_CHARGER_ADMITTED;
            s->adm[n_adm++] = k;
            pp = admit_run(s, out, pp + 1, end, &n_adm, &r);
            continue;
        }
        admit_fail(s, k, o, failed);
        pp = admit_fails(s, out, pp + 1, end);
        /* it stopped at a charger that fits (no answer remembered) or that may switch phases */
        if (pp < end && !remembered(s, (int32_t)pp->item)) {
            pp = admit_run(s, out, pp, end, &n_adm, &r);
        }
    }
    s->adm_prev = n_adm;
    return n_adm;
}

/* stage 5 after the sort: admit the eligible chargers pairs[0..n_items) in that order, each at its minimum
 * if it fits; returns how many were admitted (listed in adm[]). admit_quick where it applies, else (or
 * from where it gave up) admit_seq. */
DLB_NOINLINE static int32_t admit(dlb_site *s, dlb_charger_output *out, int64_t now, int32_t n_items)
{
    const int64_t *const rr = s->cx[0].run;
    int32_t from = 0;
    s->adm_n = 0;
    /* members, not live values across the calls: keep this frame small (the stack bound in dlb.h) */
    s->adm_items = n_items;
    s->adm_out = out;
    s->adm_now = now;
    /* The quick path pays where a batch sums many minima per circuit it flushes: the last step admitted at
     * least two chargers per circuit (admit_flush costs about what admit_run saves on one charger). */
    if (s->adm_skip > 0) {
        s->adm_skip--;
    } else if (s->single_root && s->adm_prev >= 2 * s->nc && (rr[0] | rr[1] | rr[2] | rr[DLB_LANE_POWER]) >= 0) {
        from = admit_quick(s, out, now, n_items);
        /* A batch undone (a circuit below the root bound) wasted its work: on a site where that is the
         * rule, the quick path waits a number of steps, doubled after each undo (up to 1024), reset by a
         * step without one. Only the work done depends on it, not the outputs. */
        s->adm_back = from < s->adm_items ? (s->adm_back < 8 ? 16 : s->adm_back < 1024 ? 2 * s->adm_back : 1024) : 0;
        s->adm_skip = s->adm_back;
        if (from == s->adm_items) {
            s->adm_prev = s->adm_n;
            return s->adm_n;
        }
    }
    return admit_seq(s, from);
}

/* stage 4 detail: a paused charger held off (min_off_ms after a pause, or max_starts_per_hour starts within
 * the last hour) is not eligible: its key is KEY_REST and its outputs final here. Returns 1 if so.
 * off_lim = max(now - min_off_ms, TNONE): a pause at off_since (>= 0, or TNONE) holds it off exactly while
 * off_since > off_lim, one comparison that TNONE never passes. */
static inline int held_off(dlb_site *s, int32_t k, const charger_state *st, dlb_charger_output *o, int64_t now,
                           int64_t off_lim, uint64_t *key_k)
{
    if (st->off_since <= off_lim && now >= st->cap_until) {
        return 0;
    }
    *key_k = KEY_REST;
    o->reason = st->off_since > off_lim ? DLB_REASON_MIN_OFF : DLB_REASON_START_CAP;
    o->limit_circuit = DLB_NONE;
    o->limit_lane = DLB_NONE;
    if (st->wait_since == TNONE) {
        s->key[s->nk + s->n_todo++] = (uint64_t)k;
    }
    return 1;
}

/* stage 4 detail: the policy part of an admission key, clamped (policy_pkey's, clamped as admission_key
 * does). Under FAIR and PRIORITY delivered_mams >= 0 (it only grows) and < 2^63: the key is in [0, 2^43),
 * no clamp. */
static inline uint64_t pkey_clamped(const dlb_site *s, int32_t k, const charger_state *st, const dlb_charger *kc,
                                    int64_t now, int32_t policy)
{
    if (policy == DLB_POLICY_FAIR || policy == DLB_POLICY_PRIORITY) {
        return (uint64_t)((st->delivered_mams / kc->weight) >> 20);
    }
    return (uint64_t)max64(0, min64(policy_pkey(s, k, st, kc, now), KEY_PKEY_MAX));
}

/* stage 4 detail: the ramp's ceiling (a paused charger restarts at its minimum), then hi on the step grid */
static inline void ramp_hi(charger_scratch *x, const dlb_charger *kc, int64_t sp, int64_t ramp_add)
{
    const int64_t cap = sp > 0 ? max64(kc->min_ma, sp + ramp_add) : kc->min_ma;
    if (cap < x->hi) {
        x->hi = (int32_t)cap;
        x->hi_reason = DLB_REASON_RAMP;
    }
    x->hi = (int32_t)(floor_grid(x->hi, kc->step_ma));
}

/* ceilings_one's end for a charger on or with reclaim state, past reclaim(): its flags, hi, and its
 * admission key (0) or held off (1). Also run for a deferred probe claim (see probe_claim) at the end of
 * the blocked stages 1-4: hi is still kc->max_ma then (ceilings_one's start), and nothing else it reads
 * has changed since. */
static DLB_INLINE int ceilings_reclaimed(dlb_site *s, dlb_charger_output *o, int32_t k, int64_t now,
                                         int64_t ramp_add, const int32_t ramp)
{
    charger_state *st = &s->ks[k];
    const dlb_charger *kc = &s->chg[k];
    charger_scratch *x = &s->kx[k];
    uint64_t *const key = s->akey;
    const int64_t sp = st->sp;
    st->reclaim_any = (uint8_t)(st->below_since != TNONE || st->probing || st->reclaim_cap > 0);
    o->flags = (x->narrowed * DLB_CHARGER_NARROWED) | ((uint32_t)(st->reclaim_cap > 0) * DLB_CHARGER_RECLAIMED) |
               ((uint32_t)st->probing * DLB_CHARGER_PROBING); /* narrowed and probing are 0 or 1 */
    if (st->reclaim_cap > 0 && st->reclaim_cap < x->hi) {
        x->hi = st->reclaim_cap;
        x->hi_reason = DLB_REASON_EV;
    }
    if (ramp > 0) {
        ramp_hi(x, kc, sp, ramp_add);
    } /* else hi is max_ma or a reclaim cap, both on the step grid already: no division */
    const int64_t off_lim = max64(now - s->p.min_off_ms, TNONE);
    if (sp == 0 && held_off(s, k, st, o, now, off_lim, &key[k])) {
        return 1;
    }
    /* its admission key, computed here while its state is at hand (nothing it reads changes before
     * stage 5, which then reads the keys in admission order without revisiting the chargers' state) */
    key[k] = admission_key(s, k, st, kc, x->drawn, now, &x->tier);
    return 0;
}

/* stage 4 for charger k off the kept paths (see ceilings_loop): its outputs where final, hi, tier and its
 * admission key (akey[k]); returns 1 if it is not eligible (key KEY_REST). Clears its kept entry unless it
 * writes a new one. The step's time tests as one comparison each (stored times are >= 0 or TNONE): held
 * off by min_off_ms while off_since > off_lim (held_off); starving while wait_since != TNONE and
 * now - wait_since >= rot, i.e. (unsigned) wait_since < starve_end (TNONE reads as 2^64 - 1). */
static DLB_INLINE int ceilings_one(dlb_site *s, dlb_charger_output *o, int32_t k, int64_t now, int64_t ramp_add,
                                   const int fair_noramp)
{
    const dlb_params *p = &s->p;
    const int32_t nk = s->nk;
    charger_state *st = &s->ks[k];
    const dlb_charger *kc = &s->chg[k];
    charger_scratch *x = &s->kx[k];
    uint64_t *const key = s->akey;
    kept_key *const e = &s->kk4[k];
    const int32_t policy = fair_noramp ? DLB_POLICY_FAIR : p->policy;
    const int32_t ramp = fair_noramp ? 0 : p->ramp_up_ma_per_s;
    const int64_t margin = p->reclaim_margin_ma, min_on = p->min_on_ms, rot = p->rotation_period_ms;
    const int64_t off_lim = max64(now - p->min_off_ms, TNONE);
    const uint64_t starve_end = (uint64_t)max64(now - rot + 1, 0);
    e->until = e->until_on = 0;
    /* RECLAIMED and PROBING as they end the step: nothing after this stage changes reclaim_cap, and
     * probing only for a charger without demand (remember() stops its probe) */
    if (x->kind == KIND_LOST) {
        key[k] = KEY_REST;
        o->limit_circuit = DLB_NONE;
        o->limit_lane = DLB_NONE;
        o->setpoint_ma = st->sp;
        o->reason = (st->seen && now - st->t_last <= p->charger_timeout_ms) ? DLB_REASON_RECOVERING
                                                                            : DLB_REASON_FAILSAFE;
        o->flags = DLB_CHARGER_LOST | (st->reclaim_cap > 0 ? DLB_CHARGER_RECLAIMED : 0u) |
                   (st->probing ? DLB_CHARGER_PROBING : 0u);
        return 1; /* remember() keeps its held set-point: nothing to do */
    }
    if (x->kind == KIND_NODEMAND) {
        key[k] = KEY_REST;
        o->limit_circuit = DLB_NONE;
        o->limit_lane = DLB_NONE;
        o->reason = st->state == DLB_STATE_FAULT         ? DLB_REASON_FAULT
                    : st->state == DLB_STATE_UNAVAILABLE ? DLB_REASON_UNAVAILABLE
                                                         : DLB_REASON_NOT_CONNECTED;
        o->flags = st->reclaim_cap > 0 ? DLB_CHARGER_RECLAIMED : 0u; /* not narrowed: no demand */
        if (st->sp != 0 || st->wait_since != TNONE || st->probing) {
            s->key[nk + s->n_todo++] = (uint64_t)k;
        }
        return 1;
    }
    const int64_t sp = st->sp;
    x->hi = kc->max_ma;
    x->hi_reason = DLB_REASON_CHARGER_MAX;
    if (!st->reclaim_any && (sp == 0 || x->drawn + margin >= sp)) {
        /* Without reclaim state and, if on, not drawing clearly below its set-point (most chargers, paused
         * or on): reclaim() would change nothing, and the admission key is admission_key's without the
         * reclaim (IDLE) test, with what was tested here not tested again. */
        o->flags = x->narrowed * DLB_CHARGER_NARROWED;
        if (ramp > 0) {
            ramp_hi(x, kc, sp, ramp_add);
        }
        const uint64_t cls = policy == DLB_POLICY_PRIORITY ? (uint64_t)(255 - kc->priority) << 54 : 0u;
        if (sp > 0) { /* on: no held-off or starving test; must stay, sticky or other by its time on */
            const int64_t on_for = now - st->on_since;
            const uint64_t pk = pkey_clamped(s, k, st, kc, now, policy);
            uint64_t bits;
            int64_t until;
            if (on_for < min_on) {
                x->tier = 0;
                bits = cls;
                until = st->on_since + min_on;
            } else {
                const int32_t tier = on_for < rot ? TIER_STICKY : TIER_OTHER;
                x->tier = (uint8_t)tier;
                bits = ((uint64_t)1 << 62) | cls | ((uint64_t)tier << KEY_PKEY_BITS);
                until = on_for < rot ? st->on_since + rot : INT64_MAX;
            }
            key[k] = bits | pk;
            if (fair_noramp) {
                e->key = bits;
                e->until_on = until;
                e->delivered = (int64_t)kc->weight << 20;
            }
            return 0;
        }
        if (held_off(s, k, st, o, now, off_lim, &key[k])) {
            if (fair_noramp) { /* kept while the same reason holds (see kept_key) */
                const int32_t why = o->reason;
                e->until = why == DLB_REASON_MIN_OFF ? st->off_since + p->min_off_ms : st->cap_until;
                e->delivered = -1;
                e->key = (uint64_t)why;
            }
            return 1;
        }
        const int64_t ws = st->wait_since;
        uint64_t kk;
        int64_t until;
        if ((uint64_t)ws < starve_end) {
            x->tier = TIER_STARVING | TIER_WAITING;
            kk = ((uint64_t)1 << 62) | cls | (uint64_t)min64(ws, KEY_PKEY_MAX); /* ws >= 0 here */
            until = INT64_MAX;
        } else {
            x->tier = TIER_OTHER | (ws != TNONE ? TIER_WAITING : 0);
            kk = ((uint64_t)1 << 62) | cls | ((uint64_t)TIER_OTHER << KEY_PKEY_BITS) |
                 pkey_clamped(s, k, st, kc, now, policy);
            until = ws != TNONE ? ws + rot : 0; /* starving from ws + rot */
        }
        key[k] = kk;
        if (fair_noramp) {
            e->until = until;
            e->delivered = st->delivered_mams;
        }
        return 0;
    }
    /* on, or with reclaim state (sp >= 0); under FAIR without ramp (the blocked stages 1-4, see dlb_step)
     * a probe claim waits for the end of the pass, and with it the rest (3: listed by the caller) */
    if (reclaim(s, k, x->drawn, now, fair_noramp)) {
        return 3;
    }
    return ceilings_reclaimed(s, o, k, now, ramp_add, ramp);
}

/* stage 4 for charger k by its kept entry (policy FAIR without ramp, see kept_key), with the outputs every
 * charger gets here: returns 0 (eligible) or 1 (held off) if the entry held, else 2 (ceilings_one then,
 * which writes the rest). Reason and limit only where final: here for one not eligible, in stage 5 for
 * the others (each fails there, which names the lane, or is admitted). */
static DLB_INLINE int ceilings_kept(dlb_site *s, dlb_charger_output *o, const charger_state *st,
                                    charger_scratch *x, const kept_key *e, uint64_t *key_k, int32_t k,
                                    int64_t now, int64_t margin)
{
    o->setpoint_ma = 0;
    o->phases = st->mode;
    x->sp0 = st->sp; /* (see charger_scratch) */
    o->flags = x->narrowed * DLB_CHARGER_NARROWED; /* where the entry does not hold ceilings_one rewrites it */
    if ((x->kind | st->sp) == 0) { /* KIND_DEMAND (0) and paused */
        if (now < e->until) {
            if (st->delivered_mams == e->delivered) {
                return 0; /* its key kept in akey[k] (see kept_key) */
            }
            if (e->delivered < 0) { /* held off as the entry says (see kept_key): as held_off() */
                o->reason = (int32_t)e->key;
                o->limit_circuit = DLB_NONE;
                o->limit_lane = DLB_NONE;
                if (st->wait_since == TNONE) {
                    s->key[s->nk + s->n_todo++] = (uint64_t)k;
                }
                return 1;
            }
        }
    } else if (x->kind == KIND_DEMAND) { /* on */
        if (now < e->until_on && x->drawn + margin >= st->sp) {
            *key_k = e->key | (uint64_t)(st->delivered_mams / e->delivered); /* tier bits kept (see kept_key) */
            return 0;
        }
    }
    return 2;
}

/* ceilings_one for the default parameters, out of line: ceilings_fair calls it for the few chargers without
 * a usable kept entry (its frame then holds only the kept-key loop's values) */
DLB_NOINLINE static int ceilings_one_fair(dlb_site *s, dlb_charger_output *o, int32_t k, int64_t now)
{
    const int r = ceilings_one(s, o, k, now, 0, 1);
    if (r == 3) { /* its probe claim waits for the end of the pass (see probe_claim): counted then */
        s->adm[s->n_defer++] = k;
        return 0;
    }
    return r;
}

/* stage 4's loop for the default parameters (policy FAIR, no ramp: their tests folded away), keeping the
 * usual chargers' keys between steps (see kept_key): most then cost their outputs, one or two tests and a
 * load or a division for their key (ceilings_kept, two chargers a round: half the loop's pointer steps),
 * the rest ceilings_one_fair. For chargers k0..k1 - 1 (a block of the blocked stages 1-4, see
 * stages_fair); returns how many are not eligible (those whose probe claim waits are counted later). */
DLB_NOINLINE static int32_t ceilings_fair(dlb_site *s, dlb_charger_output *out, int64_t now, int32_t k0, int32_t k1)
{
    const charger_state *const ks = s->ks;
    charger_scratch *const kx = s->kx;
    uint64_t *const key = s->akey;
    const kept_key *const kk4 = s->kk4;
    const int64_t margin = s->p.reclaim_margin_ma;
    int32_t n_rest = 0, k = k0;
    for (; k + 1 < k1; k += 2) {
        int r = ceilings_kept(s, &out[k], &ks[k], &kx[k], &kk4[k], &key[k], k, now, margin);
        n_rest += r < 2 ? r : ceilings_one_fair(s, &out[k], k, now);
        r = ceilings_kept(s, &out[k + 1], &ks[k + 1], &kx[k + 1], &kk4[k + 1], &key[k + 1], k + 1, now, margin);
        n_rest += r < 2 ? r : ceilings_one_fair(s, &out[k + 1], k + 1, now);
    }
    if (k < k1) { /* an odd last one: without its kept entry (ceilings_one's result is the same) */
        out[k].setpoint_ma = 0;
        out[k].phases = s->ks[k].mode;
        s->kx[k].sp0 = s->ks[k].sp;
        n_rest += ceilings_one_fair(s, &out[k], k, now);
    }
    return n_rest;
}

/* stage 4's loop for other parameters: ceilings_one for every charger; returns how many are eligible */
DLB_NOINLINE static int32_t ceilings_general(dlb_site *s, dlb_charger_output *out, int64_t now, int64_t dt)
{
    const int32_t nk = s->nk;
    const int32_t ramp = s->p.ramp_up_ma_per_s;
    /* the ramp's increase over this step, the same for every charger */
    const int64_t ramp_add = ramp > 0 ? fdiv((int64_t)ramp * dt, 1000) : 0;
    int32_t n_rest = 0;
    for (int32_t k = 0; k < nk; k++) {
        dlb_charger_output *o = &out[k];
        o->setpoint_ma = 0;
        o->phases = s->ks[k].mode;
        s->kx[k].sp0 = s->ks[k].sp;
        n_rest += ceilings_one(s, o, k, now, ramp_add, 0);
    }
    return nk - n_rest;
}

/* stage 4 for every charger (out of line for the same reason as charger_pass); returns how many are
 * eligible. Each charger's akey[k] is its admission key if eligible, else KEY_REST (stage 5 then sorts the
 * keys alone). The chargers outside the admitted ones for which stage 9's remember() changes something
 * are listed as stages 4 and 5 settle their set-point at 0 (or a lost one's held value, which changes
 * nothing) in the upper half of key[] (the fill's use is key[0..nk)). The loop twice: once for the
 * default parameters, with their tests folded and kept keys, once in general. */
/* Stages 1-4 under the default parameters (policy FAIR, no ramp) run in blocks of STAGES_BLOCK chargers
 * (see dlb_step): stages 1-3 for a block (charger_pass and charger_general), then its stage 4
 * (ceilings_fair) while its chargers' state and scratch are still in the L1 cache (a step otherwise reads
 * them from L2 once more for stage 4: about 1.5-2% of a step at N = 1,000, measured), then circuit_sums
 * (stage 3's circuit part, which no stage 4 reads). The result is the stage-by-stage one: a charger's
 * stages 1-4 use only its own state, except a probe claim in reclaim(), which reads the meter's
 * probe_owner as every stage 1 and the earlier chargers' stage 4 left it. Those claims wait for the end
 * of the pass (ceilings_one returns 3, the charger is listed in adm[]) and run here in charger order
 * (probe_claim tells apart the releases the claim would not have seen), each followed by the rest of its
 * stage 4; returns how many of them are not eligible. */
#define STAGES_BLOCK 64
DLB_NOINLINE static int32_t claims_deferred(dlb_site *s, dlb_charger_output *out, int64_t now)
{
    int32_t n_rest = 0;
    s->in_stage4 = 0;
    for (int32_t i = 0; i < s->n_defer; i++) {
        const int32_t k = s->adm[i];
        probe_claim(s, k, now);
        n_rest += ceilings_reclaimed(s, &out[k], k, now, 0, 0);
    }
    return n_rest;
}

/* ------------------------------------------------------------------------------------------------ */
/* stage 6: weighted max-min fair progressive filling over a group of chargers */

/* Add (dW, dD) per unit of factor to every lane charger k loads and mark the circuits dirty (they are
 * re-keyed once per batch). Returns 1 if a touched lane now saturates below `level` (D < W * level; not
 * checked for level < 0):
 * the caller must then re-key before the next event, exactly as if every event re-keyed at once.
 * W <= 3 * 16 * DLB_MAX_CHARGERS and level <= DLB_MAX_CURRENT_MA * DLB_Q, so W * level < 2^63. */
static int lanes_adjust(dlb_site *s, int32_t k, int64_t dW, int64_t dD, int64_t level)
{
    const charger_scratch *x = &s->kx[k];
    const uint32_t used = x->used;
    const int64_t n = x->n_used;
    const int64_t m0 = (int64_t)(used & 1u), m1 = (int64_t)((used >> 1) & 1u), m2 = (int64_t)((used >> 2) & 1u);
    int32_t depth;
    const int32_t *path = path_of(s, k, &depth);
    int below = 0;
    circuit_scratch *const cx = s->cx;
    const int32_t *const hpa = s->hp;
    int32_t *const dirty = s->dirty;
    int32_t n_dirty = s->n_dirty;
    for (int32_t i = 0; i < depth; i++) {
        int32_t c = path[i];
        circuit_scratch *cs = &cx[c];
        const int32_t hpc = hpa[c];
        const int64_t mp = n * hpc; /* an uncapped power lane stays out of the fill (W = 0) */
        cs->W[0] += dW * m0;
        cs->D[0] += dD * m0;
        cs->W[1] += dW * m1;
        cs->D[1] += dD * m1;
        cs->W[2] += dW * m2;
        cs->D[2] += dD * m2;
        cs->W[DLB_LANE_POWER] += dW * mp;
        cs->D[DLB_LANE_POWER] += dD * mp;
        if (level >= 0) { /* charger events only: an untouched lane was at or above level and is unchanged */
            uint32_t touched = used | ((uint32_t)hpc << DLB_LANE_POWER);
            for (int ln = 0; ln < DLB_LANES; ln++) {
                below |= ((touched >> ln) & 1u) && cs->W[ln] > 0 && cs->D[ln] < cs->W[ln] * level;
            }
        }
        if (cs->dirty == 0) {
            dirty[n_dirty++] = c;
        }
        cs->dirty |= used | ((uint32_t)hpc << DLB_LANE_POWER);
    }
    s->n_dirty = n_dirty;
    return below;
}

/* The same change as lanes_adjust(s, k, dW, dW * level, -1), deferred: added to the pending change of
 * k's circuit only. lanes_flush(s, level) applies every pending change before the tree is next
 * consulted. Every change of one batch is at one level (a START adds (w, min * Q) = (w, w * level), an
 * END (-w, -hi * Q), a freeze (-w, -w * level): Q / w is exact), so D changes by W's change times the
 * level and only W is pending. W and D get the same integer sums (in another order) and the same lanes
 * are re-keyed, so the fill is the same: but a batch of events on one subtree updates each circuit
 * above once instead of once per event (a saturating root lane freezes chargers everywhere). */
#define PEND_MARK 16u
static void pend_push(dlb_site *s, int32_t c)
{
    const int32_t d = s->plen[c];
    s->cx[c].pnext = s->phead[d];
    s->phead[d] = c;
    if (d > s->pdepth) {
        s->pdepth = d;
    }
}

/* pend_push for a parent met in a flush at depth d: its depth d - 1 is below pdepth */
static inline void pend_push_up(dlb_site *s, int32_t par, int32_t d)
{
    s->cx[par].pnext = s->phead[d - 1];
    s->phead[d - 1] = par;
}

static inline void lanes_pend(dlb_site *s, int32_t k, int64_t dW)
{
    const charger_scratch *x = &s->kx[k];
    const uint32_t used = x->used;
    const int64_t n = x->n_used;
    const int32_t c = x->circ16;
    circuit_scratch *cs = &s->cx[c];
    if (cs->pmask == 0) {
        pend_push(s, c);
    }
    cs->pmask |= used | PEND_MARK;
    const int64_t *const lm = lane_mask[used & 7u]; /* dW on the used phases, 0 elsewhere: no products */
    cs->pW[0] += dW & lm[0];
    cs->pW[1] += dW & lm[1];
    cs->pW[2] += dW & lm[2];
    cs->pW[DLB_LANE_POWER] += dW * n;
}

/* a lane's saturation level floor(D / W), INF if it does not grow (W = 0); D >= 0 is the usual case
 * (always unless a lane started negative, see progressive_fill), where C's division is the floor */
static inline int64_t lane_level(int64_t D, int64_t W)
{
    if (W <= 0) {
        return INF;
    }
    return D >= 0 ? D / W : fdiv(D, W);
}

/* lane_level, with nonneg = 1 where D >= 0 is known */
static inline int64_t lane_level_of(int64_t D, int64_t W, int nonneg)
{
    if (W <= 0) {
        return INF;
    }
    return nonneg ? D / W : lane_level(D, W);
}

/* The tree above the circuits listed in dirty[] (whose tlv[] changed): one walk up from each, or when
 * many changed, only its root: the first circuit of the lowest tlv[] (the tree's winner: lowest level,
 * then lowest index), found by one pass over tlv[] (some 5 instructions a circuit, a bottom-up
 * recomputation some 10 a node), the nodes below left stale (tree_stale). The fill reads only the root;
 * a walk needs the nodes off its path, so the first walk after a root-only update recomputes the whole
 * tree instead (tree_rebuild). */
static void tree_update(dlb_site *s)
{
    if (s->n_dirty * s->tdepth > s->nc) {
        const int64_t *const lv = s->tlv;
        const int32_t nc = s->nc;
        int32_t best = 0;
        int64_t bl = lv[0];
        for (int32_t c = 1; c < nc; c++) {
            const int64_t l = lv[c];
            best = l < bl ? c : best;
            bl = l < bl ? l : bl;
        }
        s->heap[1] = best;
        s->tree_stale = 1;
    } else if (s->tree_stale) {
        tree_rebuild(s);
        s->tree_stale = 0;
    } else {
        for (int32_t i = 0; i < s->n_dirty; i++) {
            tree_up(s, s->dirty[i]);
        }
    }
    s->n_dirty = 0;
}

/* Apply the pending changes of a batch at `level`, deepest circuits first: each adds its own to W and
 * pW times the level to D, re-keys the lanes that changed (its used phases, and the power lane where it
 * has a power cap), lists itself in dirty[] and hands the sum to its parent (the caller then updates the
 * tree: tree_update). A circuit is complete when reached (its children are deeper), so it is re-keyed
 * once, in the same pass. The power lane's W is updated whether or not the circuit has a power cap
 * (lanes_adjust adds it times hp): an uncapped circuit's power lane is never re-keyed, so its W and D
 * are never read. Lanes written out: gcc -O2 keeps a 4-trip loop as a loop (and vectorised the 64-bit
 * products with an emulated multiply). */
static DLB_INLINE void lanes_flush_of(dlb_site *s, int64_t level, int nonneg)
{
    circuit_scratch *const cx = s->cx;
    int64_t *const lv = s->tlv;
    int32_t *const dirty = s->dirty;
    int32_t n_dirty = s->n_dirty;
    for (int32_t d = s->pdepth; d >= 1; d--) {
        int32_t c = s->phead[d];
        s->phead[d] = -1;
        while (c >= 0) {
            circuit_scratch *cs = &cx[c];
            const uint32_t mask = cs->pmask;
            const int64_t p0 = cs->pW[0], p1 = cs->pW[1], p2 = cs->pW[2], p3 = cs->pW[3];
            cs->W[0] += p0;
            cs->W[1] += p1;
            cs->W[2] += p2;
            cs->W[3] += p3;
            if (mask & 1u) {
                cs->D[0] += p0 * level;
                cs->lvl[0] = lane_level_of(cs->D[0], cs->W[0], nonneg);
            }
            if (mask & 2u) {
                cs->D[1] += p1 * level;
                cs->lvl[1] = lane_level_of(cs->D[1], cs->W[1], nonneg);
            }
            if (mask & 4u) {
                cs->D[2] += p2 * level;
                cs->lvl[2] = lane_level_of(cs->D[2], cs->W[2], nonneg);
            }
            if (s->hp[c]) {
                cs->D[3] += p3 * level;
                cs->lvl[3] = lane_level_of(cs->D[3], cs->W[3], nonneg);
            }
            lv[c] = circ_best(cs, c, &cs->key_lane);
            dirty[n_dirty++] = c;
            if (d > 1) { /* c is at depth d = plen[c]: it has a parent, the second of its path */
                const int32_t par = s->path[(size_t)c * DLB_MAX_DEPTH + 1];
                circuit_scratch *ps = &cx[par];
                if (ps->pmask == 0) {
                    pend_push_up(s, par, d);
                }
                ps->pmask |= mask;
                ps->pW[0] += p0;
                ps->pW[1] += p1;
                ps->pW[2] += p2;
                ps->pW[3] += p3;
            }
            cs->pW[0] = cs->pW[1] = cs->pW[2] = cs->pW[3] = 0;
            cs->pmask = 0;
            c = cs->pnext;
        }
    }
    s->pdepth = 0;
    s->n_dirty = n_dirty;
}

/* the two cases of lanes_flush: with no lane started negative (the fill's check_below = 0) every D is
 * >= 0 (see progressive_fill), so C's division is the floor; else floor division */
DLB_NOINLINE static void lanes_flush(dlb_site *s, int64_t level) { lanes_flush_of(s, level, 0); }
DLB_NOINLINE static void lanes_flush_nn(dlb_site *s, int64_t level) { lanes_flush_of(s, level, 1); }

/* the fill's final take, deferred like lanes_pend: amount (per conductor) from every lane charger k
 * loads, added to the pending sums of its circuit (pW, free after the fill's last lanes_flush) */
static inline void lanes_pend_run(dlb_site *s, int32_t k, int64_t amount)
{
    const charger_scratch *x = &s->kx[k];
    const uint32_t used = x->used;
    const int32_t c = x->circ16;
    circuit_scratch *cs = &s->cx[c];
    if (cs->pmask == 0) {
        pend_push(s, c);
        cs->pmask = PEND_MARK;
    }
    const int64_t *const lm = lane_mask[used & 7u]; /* as in lanes_pend */
    cs->pW[0] += amount & lm[0];
    cs->pW[1] += amount & lm[1];
    cs->pW[2] += amount & lm[2];
    cs->pW[DLB_LANE_POWER] += amount * x->n_used;
}

/* take the pending sums of lanes_pend_run from run[], deepest circuits first, each handing its sum to
 * its parent: every circuit's run[] changes by the sum over the chargers below it, as run_take's walks
 * would (uncapped power lanes hold INF and stay far above any current, as there) */
static void run_flush(dlb_site *s)
{
    circuit_scratch *const cx = s->cx;
    if (s->pdepth == 0) {
        return;
    }
    s->gen++;
    for (int32_t d = s->pdepth; d >= 1; d--) {
        int32_t c = s->phead[d];
        s->phead[d] = -1;
        while (c >= 0) {
            circuit_scratch *cs = &cx[c];
            cs->run[0] -= cs->pW[0];
            cs->run[1] -= cs->pW[1];
            cs->run[2] -= cs->pW[2];
            cs->run[3] -= cs->pW[3];
            if (d > 1) { /* as in lanes_flush_of */
                const int32_t par = s->path[(size_t)c * DLB_MAX_DEPTH + 1];
                circuit_scratch *ps = &cx[par];
                if (ps->pmask == 0) {
                    pend_push_up(s, par, d);
                    ps->pmask = PEND_MARK;
                }
                ps->pW[0] += cs->pW[0];
                ps->pW[1] += cs->pW[1];
                ps->pW[2] += cs->pW[2];
                ps->pW[3] += cs->pW[3];
            }
            cs->pW[0] = cs->pW[1] = cs->pW[2] = cs->pW[3] = 0;
            cs->pmask = 0;
            c = cs->pnext;
        }
    }
    s->pdepth = 0;
}

/* re-key every circuit lanes_adjust changed (marked in dirty[] and cs->dirty, the batches with
 * lanes_adjust's check): recompute the changed lanes' levels and its key, then the tree above */
DLB_NOINLINE static void rekey_dirty(dlb_site *s)
{
    int64_t *const lv = s->tlv;
    for (int32_t i = 0; i < s->n_dirty; i++) {
        int32_t c = s->dirty[i];
        circuit_scratch *cs = &s->cx[c];
        const uint32_t d = cs->dirty;
        for (int ln = 0; ln < DLB_LANES; ln++) {
            if (d & (1u << ln)) {
                cs->lvl[ln] = lane_level(cs->D[ln], cs->W[ln]);
            }
        }
        cs->dirty = 0;
        lv[c] = circ_best(cs, c, &cs->key_lane);
    }
}

/* Every lane's W back to 0 at once, when a saturation at `level` froze the last growing charger: W of a
 * lane is the sum of (factor * weight) over the started chargers not frozen, so each lane's pending
 * change is -W, and its D changes by -W * level, as lanes_pend and lanes_flush would have added it
 * charger by charger (the same integer sums). Every level is then INF, so is every tlv[] (the tree's
 * nodes are as good as at the fill's start). O(C), no division: chosen when the frozen are many. The
 * store to tlv[] sits between the lanes on purpose: gcc cannot tell it from a store into cx[], so its
 * SLP vectoriser does not pack the four products into one emulated 64-bit vector multiply (SSE2 has
 * none; 1.4x the instructions of the scalar code), and the loop stays scalar (21 instructions per
 * circuit) without any optimisation attribute. */
DLB_NOINLINE static void lanes_settle(dlb_site *s, int64_t level)
{
    circuit_scratch *const cx = s->cx;
    int64_t *const lv = s->tlv;
    for (int32_t c = 0; c < s->nc; c++) {
        circuit_scratch *cs = &cx[c];
        cs->D[0] -= cs->W[0] * level;
        cs->D[1] -= cs->W[1] * level;
        lv[c] = INF; /* here: see above */
        cs->D[2] -= cs->W[2] * level;
        cs->D[3] -= cs->W[3] * level;
        cs->W[0] = cs->W[1] = cs->W[2] = cs->W[3] = 0;
        cs->lvl[0] = cs->lvl[1] = cs->lvl[2] = cs->lvl[3] = INF;
    }
}

/* first index of glist[0..n) whose dfs position is >= pos */
static int32_t glist_lower_bound(const dlb_site *s, int32_t n, int32_t pos)
{
    int32_t lo = 0, hi = n;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (s->dfs_pos[s->glist[mid]] < pos) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* level of charger k's next event in one of the fill's sorted event lists */
static int64_t start_level(const dlb_site *s, int32_t k) { return (int64_t)s->kx[k].min_ma * s->qw[k]; }
static int64_t end_level(const dlb_site *s, int32_t k) { return (int64_t)s->kx[k].hi * s->qw[k]; }

/* bitmaps of positions in a presorted list (the fill's large groups); zero outside a fill */
static inline void bit_set(uint64_t *bm, int32_t pos) { bm[pos >> 6] |= (uint64_t)1 << (pos & 63); }

/* the index of the lowest set bit of x != 0: one instruction with gcc/clang's builtin, else a de Bruijn
 * multiply (standard C); the same index either way */
#if defined(__GNUC__)
static inline size_t lowest_bit(uint64_t x) { return (size_t)__builtin_ctzll(x); }
#else
static const int8_t debruijn64[64] = {0,  1,  48, 2,  57, 49, 28, 3,  61, 58, 50, 42, 38, 29, 17, 4,
                                      62, 55, 59, 36, 53, 51, 43, 22, 45, 39, 33, 30, 24, 18, 12, 5,
                                      63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11,
                                      46, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9,  13, 8,  7,  6};
static inline size_t lowest_bit(uint64_t x) { return (size_t)debruijn64[((x & (0 - x)) * 0x03f79d71b4cb0a89ull) >> 58]; }
#endif

/* The fill's current event of one kind (START or END) from the bitmap over its presorted list perm[]:
 * *w is a word, moved past empty words; -1 when none is left */
static DLB_INLINE int32_t bm_event(const uint64_t *bm, int32_t n_words, const int32_t *perm, int32_t *w)
{
    int32_t i = *w;
    while (i < n_words && bm[i] == 0) {
        i++;
    }
    *w = i;
    return i < n_words ? perm[(size_t)i * 64 + lowest_bit(bm[i])] : -1;
}

/* out[] = list[pos] for every set bit pos of bm, ascending, clearing bm; returns the count */
static int32_t bits_take(uint64_t *bm, int32_t n_words, const int32_t *list, int32_t *out)
{
    int32_t *o = out;
    for (int32_t w = 0; w < n_words; w++) {
        uint64_t x = bm[w];
        if (x == 0) {
            continue;
        }
        bm[w] = 0;
        const int32_t *const base = list + (size_t)w * 64;
        do {
            *o++ = base[lowest_bit(x)];
            x &= x - 1;
        } while (x != 0);
    }
    return (int32_t)(o - out);
}

/* start_run (see dlb_site) from perm_start, at the end of the site's memory `end`; by dlb_init */
DLB_NOINLINE static void fill_cfg(dlb_site *s, unsigned char *end)
{
    const int32_t nk = s->nk;
    int32_t *const run = (int32_t *)(void *)(end - align8((size_t)nk * sizeof(int32_t)));
    s->start_run = run;
    for (int32_t p = nk - 1; p >= 0; p--) {
        run[p] = p + 1 < nk && start_level(s, s->perm_start[p]) == start_level(s, s->perm_start[p + 1])
                     ? run[p + 1]
                     : p + 1;
    }
}

/* The START events of a large group at the level of ks, the first set bit of bitmap bm_start (in word
 * is), applied as the fill's batch does without lanes_adjust's check (lanes_pend), and with lazy_end each
 * one's END bit set. perm_start is sorted by (level, index), so the events at ks's level are exactly the
 * set bits from ks's position to the end of its level's run (start_run): they are taken from the bitmap
 * into tmp[] (free during the fill's loop) in that order, with no level computed per charger, then
 * applied in a loop of their own (fewer values live: the fill's loop would reload them from the stack
 * for every START). Returns the lowest word of an END bit set (n_words if none): the END cursor moves
 * back to it. The START cursor is left where it was (the fill's next read moves it past the words
 * emptied here). No START read here is of a frozen charger: a large group's START bit is set only for
 * a charger not frozen (events_large, or afresh after freeze_all for one not started), a freeze clears
 * the bits of those it freezes (freeze_clr, or freeze_all and the bitmap set afresh), and an END (which
 * freezes) comes after its START (hi > min). */
static DLB_INLINE int32_t start_batch_of(dlb_site *s, int32_t is, int32_t ks, int lazy_end)
{
    uint64_t *const bm = s->bm;
    int32_t *const list = s->tmp;
    int32_t n = 0;
    {
        const int32_t pe = s->start_run[s->rank_start[ks]]; /* > ks's position: not 0 */
        const int32_t we = (pe - 1) >> 6;                   /* the word of the run's last position */
        const int32_t *const perm = s->perm_start;
        for (int32_t w = is; w <= we; w++) { /* no bit before ks's position is set (the lowest) */
            uint64_t x = bm[w];
            if (w == we) { /* the run's positions in it: the lowest pe - 64 * we (1..64) */
                const uint64_t low = ~(uint64_t)0 >> (64 - (pe - 64 * we));
                bm[w] = x & ~low;
                x &= low;
            } else {
                bm[w] = 0;
            }
            const int32_t *const base = perm + (size_t)w * 64;
            while (x != 0) {
                list[n++] = base[lowest_bit(x)];
                x &= x - 1;
            }
        }
    }
    uint64_t *const bm_end = bm + s->n_words;
    const int32_t *const rank_end = s->rank_end;
    charger_scratch *const kx = s->kx;
    int32_t e_low = s->n_words;
    for (int32_t i = 0; i < n; i++) {
        const int32_t k = list[i];
        kx[k].started = 1; /* START: grows past its minimum */
        if (lazy_end) {
            const int32_t r = rank_end[k];
            bit_set(bm_end, r);
            e_low = r >> 6 < e_low ? r >> 6 : e_low;
        }
        lanes_pend(s, k, kx[k].weight);
    }
    s->n_live += n;
    return e_low;
}

/* the two cases apart: a test less and a value less to keep per START */
DLB_NOINLINE static int32_t start_batch_lazy(dlb_site *s, int32_t is, int32_t ks)
{
    return start_batch_of(s, is, ks, 1);
}

DLB_NOINLINE static int32_t start_batch(dlb_site *s, int32_t is, int32_t ks)
{
    return start_batch_of(s, is, ks, 0);
}

/* Sort a[0..n) of chargers by rank[] (distinct values in [0, nk)): an LSD radix sort, 4 bits a pass
 * (at most 4 passes for DLB_MAX_CHARGERS), O(n + 16) each. Sorting by a presorted position gives the
 * same order as sorting by that list's (level, index), in O(n) instead of O(n log n). */
static void rank_sort(dlb_site *s, int32_t *a, int32_t n, const int32_t *rank)
{
    int32_t *src = a, *dst = s->tmp;
    int32_t *cnt = s->radix;
    for (int shift = 0; ((s->nk - 1) >> shift) > 0; shift += 4) {
        memset(s->radix, 0, sizeof(s->radix));
        for (int32_t i = 0; i < n; i++) {
            cnt[(rank[src[i]] >> shift) & 15]++;
        }
        int32_t acc = 0;
        for (int d = 0; d < 16; d++) {
            int32_t c = cnt[d];
            cnt[d] = acc;
            acc += c;
        }
        for (int32_t i = 0; i < n; i++) {
            dst[cnt[(rank[src[i]] >> shift) & 15]++] = src[i];
        }
        int32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) {
        memcpy(a, src, (size_t)n * sizeof(int32_t));
    }
}

/* The fill's END events: items[0..n_end) (ceiling max_ma, in perm_end order) merged with
 * ev_other[0..n_other) (ceiling lowered by a reclaim cap or the ramp, sorted by level by the caller,
 * which keeps the call chain one merge_sort frame shallower) into ev_end, by (level, index). Returns the
 * number of events. */
DLB_NOINLINE static int32_t merge_end_events(dlb_site *s, int32_t n_end, int32_t n_other)
{
    if (n_other == 0) {
        memcpy(s->ev_end, s->items, (size_t)n_end * sizeof(int32_t));
        return n_end;
    }
    int32_t i = 0, j = 0, o = 0;
    while (i < n_end || j < n_other) {
        int take_other = i >= n_end;
        if (!take_other && j < n_other) {
            int32_t a = s->ev_other[j], b2 = s->items[i];
            int64_t la = (int64_t)s->kx[a].hi * s->qw[a], lb = (int64_t)s->kx[b2].hi * s->qw[b2];
            take_other = la < lb || (la == lb && a < b2);
        }
        s->ev_end[o++] = take_other ? s->ev_other[j++] : s->items[i++];
    }
    return o;
}

/* The start of a large group's fill (a function of its own: fewer values live than in the fill's loop):
 * each charger's flags and value; one with events (min < hi) gets its START bit (its END bit is set at
 * its START, see lazy_end), and one whose ceiling is lowered below max (reclaim, ramp) is listed in
 * ev_other with its END level in key[] (those ENDs are sorted apart). Returns how many are listed. */
DLB_NOINLINE static int32_t events_large(dlb_site *s, const int32_t *group, int32_t n_group)
{
    uint64_t *const bm_start = s->bm;
    const int32_t *const rank = s->rank_start;
    charger_scratch *const kx = s->kx;
    int32_t *const ev_other = s->ev_other;
    int32_t n_other = 0;
    for (int32_t i = 0; i < n_group; i++) {
        const int32_t k = group[i];
        charger_scratch *x = &kx[k];
        const int64_t hi = x->hi, mn = x->min_ma;
        x->started = 0;
        x->frozen = 0;
        if (mn >= hi) {
            continue;
        }
        bit_set(bm_start, rank[k]);
        if (hi != x->max_ma) { /* rare (reclaim, ramp): their keys below, out of this loop */
            ev_other[n_other++] = k;
        }
    }
    for (int32_t i = 0; i < n_other; i++) {
        s->key[ev_other[i]] = (uint64_t)end_level(s, ev_other[i]);
    }
    return n_other;
}

/* A saturation at `level` freezes every charger of glist[lo..hi) not frozen on a lane in on_lane (used &
 * on_lane); the others are kept in the same order from glist[lo] on, and the end of those is returned. A
 * started one's value is its share at the level, and it is listed in tmp[] (free during the fill's loop;
 * s->n_fz of them) for its lanes' change; an unstarted one stays at its minimum. clr (see the fill): bit
 * 0 clears the frozen's START bits, bit 1 their END bits (set only for started chargers). Twice, each a
 * function of its own (the fill's frame stays as it was): clr = 0 (the usual case, no test) and the
 * others. */
static DLB_INLINE int32_t freeze_loop(dlb_site *s, int32_t lo, int32_t hi, uint32_t on_lane, int64_t level,
                                      int clr)
{
    int32_t *const glist = s->glist;
    uint64_t *const bm_start = s->bm, *const bm_end = s->bm + s->n_words;
    int32_t kp = lo, n_fz = 0;
    for (int32_t g = lo; g < hi; g++) {
        const int32_t k = glist[g];
        charger_scratch *x = &s->kx[k];
        if (x->frozen) {
            continue;
        }
        if (!(x->used & on_lane)) {
            glist[kp++] = k;
            continue;
        }
        x->frozen = 1;
        if (x->started) {
            if (clr & 2) {
                const int32_t r = s->rank_end[k];
                bm_end[r >> 6] &= ~((uint64_t)1 << (r & 63));
            }
            x->value = (int64_t)x->weight * level / DLB_Q;
            s->tmp[n_fz++] = k;
        } else { /* it stays at its minimum (not started: fill_take reads no value) */
            if (clr & 1) {
                const int32_t r = s->rank_start[k];
                bm_start[r >> 6] &= ~((uint64_t)1 << (r & 63));
            }
        }
    }
    s->n_fz = n_fz;
    return kp;
}

DLB_NOINLINE static int32_t freeze_clr(dlb_site *s, int32_t lo, int32_t hi, uint32_t on_lane, int64_t level,
                                      int clr)
{
    return freeze_loop(s, lo, hi, on_lane, level, clr);
}

DLB_NOINLINE static int32_t freeze_all(dlb_site *s, int32_t lo, int32_t hi, uint32_t on_lane, int64_t level)
{
    return freeze_loop(s, lo, hi, on_lane, level, 0);
}

/* Weighted max-min fair progressive filling (see the reference's _progressive_fill for the definition).
 * Events are processed in the reference's order: charger events by (level, END before START, index)
 * while their level is not above the lowest lane level, else the lowest lane (level, lane id)
 * saturates. Levels are exact (Q / w is an integer), so a batch of charger events at one level leaves
 * every lane at or above that level and the heap need only be re-keyed once per batch; lanes_adjust
 * checks this and ends the batch early otherwise, so the order is the reference's in every case. */
static void progressive_fill(dlb_site *s, const int32_t *group, int32_t n_group)
{
    /* Early end of a batch (lanes_adjust's check) can only happen if a lane starts with D < 0. Proof:
     * at every event level L, a lane with W > 0 has D >= W * L (L <= its level floor(D / W), the heap
     * being keyed), and a lane with W = 0 has D >= 0: true at the start when no D is negative. A charger
     * event at level L changes (D, W) by a multiple of (w * L, w), which keeps D - W * L; a freeze at
     * the lowest level M subtracts a multiple of (w * M, w), which keeps D - W * M >= 0; a lane left
     * with W = 0 so keeps D >= 0. So D < W * L never happens after an event, and the check is skipped
     * (level -1) unless some lane is negative (run[] < 0 on a lane no admitted charger uses). */
    int64_t any_below = 0; /* its sign: some D < 0 (the site's arrays in locals: the stores below are
                            * int64_t and int32_t, which gcc cannot tell from the site's fields) */
    {
        circuit_scratch *const cx = s->cx;
        const int32_t *const hpa = s->hp;
        int64_t *const lv = s->tlv;
        const int32_t nc = s->nc;
        for (int32_t c = 0; c < nc; c++) {
            circuit_scratch *cs = &cx[c];
            cs->D[0] = cs->run[0] * DLB_Q;
            cs->D[1] = cs->run[1] * DLB_Q;
            cs->D[2] = cs->run[2] * DLB_Q;
            cs->D[DLB_LANE_POWER] = hpa[c] ? cs->run[DLB_LANE_POWER] * DLB_Q : 0;
            any_below |= cs->D[0] | cs->D[1] | cs->D[2] | cs->D[DLB_LANE_POWER];
            memset(cs->W, 0, sizeof(cs->W));
            memset(cs->pW, 0, sizeof(cs->pW));
            cs->lvl[0] = cs->lvl[1] = cs->lvl[2] = cs->lvl[3] = INF;
            cs->dirty = 0;
            cs->pmask = 0; /* nothing pending: lanes_flush leaves it so after each batch */
            lv[c] = INF;   /* the tree's nodes may keep the last fill's winners: all are INF now */
        }
    }
    s->tree_stale = 0; /* (so any node is as good as any other) */
    const int check_below = any_below < 0;
    s->n_dirty = 0;
    for (int d = 0; d <= DLB_MAX_DEPTH; d++) {
        s->phead[d] = -1;
    }
    s->pdepth = 0;
    int32_t n_start = 0, n_end = 0, n_other = 0;
    /* The two event sequences, each by (level, index). A large group (>= N/64 chargers) marks its
     * members' positions in the presorted permutations (perm_start, perm_end) in bitmaps and reads the
     * set bits in order as the fill goes (O(n + N/64)); a freeze clears the frozen charger's bits, so
     * the events of the chargers frozen early (most, when a root lane saturates early) are never read.
     * A small group (a priority class, or few admitted chargers) sorts its own events by those positions
     * (rank_sort, O(n) per pass). END levels lowered below max (reclaim, ramp) are sorted apart and
     * merged into a list (a large group's END bitmap read into one first). */
    const int large = (int64_t)n_group * 64 >= s->nk;
    uint64_t *const bm_start = s->bm, *const bm_end = s->bm + s->n_words;
    const int32_t n_words = s->n_words;
    if (large) {
        n_other = events_large(s, group, n_group);
    } else {
        for (int32_t i = 0; i < n_group; i++) {
            int32_t k = group[i];
            charger_scratch *x = &s->kx[k];
            x->started = 0;
            x->frozen = 0;
            if (x->min_ma >= x->hi) {
                continue;
            }
            if (x->hi != x->max_ma) {
                s->key[k] = (uint64_t)end_level(s, k);
                s->ev_other[n_other++] = k;
                s->ev_start[n_start++] = k;
            } else {
                s->ev_start[n_start++] = k;
                s->items[n_end++] = k;
            }
        }
    }
    /* END events from the bitmap as the fill goes (lazy_end), or from the list ev_end[0..n_end) */
    const int lazy_end = large && n_other == 0;
    if (!large) {
        rank_sort(s, s->ev_start, n_start, s->rank_start);
        rank_sort(s, s->items, n_end, s->rank_end);
    } else if (!lazy_end) {
        for (int32_t i = 0; i < n_group; i++) { /* the END bits the loop above left to lazy_end */
            const int32_t k = group[i];
            if (s->kx[k].min_ma < s->kx[k].hi && s->kx[k].hi == s->kx[k].max_ma) {
                bit_set(bm_end, s->rank_end[k]);
            }
        }
        n_end = bits_take(bm_end, n_words, s->perm_end, s->items);
    }
    if (!lazy_end) {
        merge_sort(s->ev_other, s->tmp, (size_t)n_other, s->key); /* here: one frame less deep */
        n_end = merge_end_events(s, n_end, n_other);
    }
    /* The group's chargers still growing (or not yet started), compacted as lanes freeze them. The
     * chargers on a saturating lane of circuit c are those of c's dfs range: the list is put in dfs order
     * (a run of it per subtree) at the first saturation below a root, as the only root's lane freezes
     * every charger on it in any order. */
    int32_t *const glist = s->glist;
    int32_t n_gl = n_group;
    int dfs_sorted = 0;
    memcpy(glist, group, (size_t)n_group * sizeof(int32_t));
    /* cursors: a word of the bitmap (large; lazy_end) or an index into the list */
    int32_t is = 0, ie = 0;
    s->n_live = 0;
    for (;;) {
        const int32_t top = s->heap[1];
        const int64_t lane_level = s->tlv[top];
        int32_t ks = large ? bm_event(bm_start, n_words, s->perm_start, &is) : is < n_start ? s->ev_start[is] : -1;
        if (lane_level == INF && ks < 0) {
            /* Nothing grows and nothing will start: a started charger that is not frozen keeps W > 0 on
             * its lanes, so its circuits are in the heap. Every END left is a frozen charger's no-op. */
            break;
        }
        int32_t ke = lazy_end ? bm_event(bm_end, n_words, s->perm_end, &ie) : ie < n_end ? s->ev_end[ie] : -1;
        const int64_t s_level = ks >= 0 ? start_level(s, ks) : INF;
        const int64_t e_level = ke >= 0 ? end_level(s, ke) : INF;
        const int64_t ev_level = min64(s_level, e_level);
        if (lane_level == INF && ev_level == INF) {
            break;
        }
        if (ev_level <= lane_level) {
            /* every charger event at this level: ENDs (by index) before STARTs (by index); with
             * lanes_adjust's check (some lane started negative) the batch may end early */
            int below = 0;
            while (ke >= 0 && end_level(s, ke) == ev_level) {
                if (lazy_end) {
                    bm_end[ie] &= bm_end[ie] - 1;
                } else {
                    ie++;
                }
                charger_scratch *x = &s->kx[ke];
                if (!x->frozen) { /* END: reaches its ceiling */
                    x->frozen = 1;
                    s->n_live -= x->started; /* started: its END is after its START */
                    x->value = x->hi;
                    if (!check_below) {
                        lanes_pend(s, ke, -(int64_t)x->weight);
                    } else if (lanes_adjust(s, ke, -(int64_t)x->weight, -(int64_t)x->hi * DLB_Q, ev_level)) {
                        below = 1;
                        break;
                    }
                }
                ke = lazy_end ? bm_event(bm_end, n_words, s->perm_end, &ie) : ie < n_end ? s->ev_end[ie] : -1;
            }
            if (large && !check_below) { /* the usual case, in a loop of its own */
                if (ks >= 0 && start_level(s, ks) == ev_level) {
                    if (lazy_end) {
                        const int32_t e_low = start_batch_lazy(s, is, ks);
                        ie = e_low < ie ? e_low : ie;
                    } else {
                        start_batch(s, is, ks);
                    }
                }
            } else {
                while (!below && ks >= 0 && start_level(s, ks) == ev_level) {
                    if (large) {
                        bm_start[is] &= bm_start[is] - 1;
                    } else {
                        is++;
                    }
                    charger_scratch *x = &s->kx[ks];
                    if (!x->frozen) { /* START: grows past its minimum */
                        x->started = 1;
                        s->n_live++;
                        if (lazy_end) { /* its END bit, above the current level: the cursor's word moves back
                                         * if the bit is before it (the words before the cursor are 0) */
                            const int32_t r = s->rank_end[ks];
                            bit_set(bm_end, r);
                            ie = r >> 6 < ie ? r >> 6 : ie;
                        }
                        if (!check_below) {
                            lanes_pend(s, ks, x->weight);
                        } else if (lanes_adjust(s, ks, x->weight, (int64_t)x->min_ma * DLB_Q,
                                                ev_level)) {
                            break;
                        }
                    }
                    ks = large ? bm_event(bm_start, n_words, s->perm_start, &is)
                               : is < n_start ? s->ev_start[is] : -1;
                }
            }
            if (check_below) {
                rekey_dirty(s);
            } else {
                lanes_flush_nn(s, ev_level); /* no lane negative */
            }
            tree_update(s);
        } else { /* the lowest lane saturates: freeze every charger on it */
            int32_t j = s->cx[top].key_lane;
            int32_t c = j / 4, ln = j % 4;
            int64_t level = lane_level;
            int32_t lo = 0, hi = n_gl;
            if (!(s->single_root && s->circ[c].parent == DLB_NONE)) {
                if (!dfs_sorted) {
                    dfs_sorted = 1;
                    if (large) {
                        uint64_t *const bm_dfs = s->bm + 2 * n_words;
                        for (int32_t g = 0; g < n_gl; g++) {
                            bit_set(bm_dfs, s->dfs_pos[glist[g]]);
                        }
                        n_gl = bits_take(bm_dfs, n_words, s->dfs, glist);
                    } else {
                        rank_sort(s, glist, n_gl, s->dfs_pos);
                    }
                }
                lo = glist_lower_bound(s, n_gl, s->range_start[c]);
                hi = glist_lower_bound(s, n_gl, s->range_end[c]);
            }
            /* A frozen charger stays frozen: the run is compacted to the chargers still growing (in the
             * same order), so that later saturations above it do not scan the frozen ones again. Its
             * events left are cleared from the bitmaps (its START if not started, its END): one by one,
             * or when the run is the whole list (the only root's lane: most of the group freezes) by
             * setting the bitmaps afresh from the chargers left. */
            /* clr: bit 0 clear START bits one by one, bit 1 END bits; 0 (large): set afresh */
            const int clr = large && !(lo == 0 && hi == n_gl) ? 1 | (lazy_end << 1) : 0;
            const uint32_t on_lane = ln == DLB_LANE_POWER ? 7u : 1u << ln; /* used & on_lane: on it */
            const int32_t keep = clr == 0 ? freeze_all(s, lo, hi, on_lane, level)
                                          : freeze_clr(s, lo, hi, on_lane, level, clr);
            const int32_t n_fz = s->n_fz; /* the started chargers frozen, in tmp[] */
            if (keep < hi) {
                memmove(glist + keep, glist + hi, (size_t)(n_gl - hi) * sizeof(int32_t));
                n_gl -= hi - keep;
            }
            if (n_gl == 0) {
                /* Every charger of the group is frozen: no value changes any more (the lanes' state is
                 * not read after the fill; nothing is pending, as the frozen were not pended; the
                 * bitmaps' bits left are at or after the cursors' words, cleared below) */
                break;
            }
            s->n_live -= n_fz;
            if (large && clr == 0) { /* every event not read is one of theirs (cursors' words below: 0) */
                memset(bm_start + is, 0, (size_t)(n_words - is) * sizeof(uint64_t));
                if (lazy_end) {
                    memset(bm_end + ie, 0, (size_t)(n_words - ie) * sizeof(uint64_t));
                }
                for (int32_t g = 0; g < n_gl; g++) {
                    const int32_t k = glist[g];
                    const charger_scratch *x = &s->kx[k];
                    if (x->started) { /* its START read, its END not (with lazy_end: set at its START) */
                        if (lazy_end) {
                            bit_set(bm_end, s->rank_end[k]);
                        }
                    } else if (x->min_ma < x->hi) { /* it has events: its START not read */
                        bit_set(bm_start, s->rank_start[k]);
                    }
                }
            }
            if (s->n_live == 0 && (int64_t)n_fz * 16 >= s->nc) {
                /* The last growing chargers froze, many: every lane at once, O(C) (lanes_settle). Pending
                 * and flushing them costs some 30 instructions each plus ~100 per circuit above them, the
                 * settle ~25 per circuit: at 1/16 chargers per circuit or more it is the cheaper one (or at
                 * worst ~400 instructions per frozen charger, when they all share a few circuits). */
                lanes_settle(s, level);
                continue;
            }
            for (int32_t i = 0; i < n_fz; i++) {
                lanes_pend(s, s->tmp[i], -(int64_t)s->kx[s->tmp[i]].weight); /* the tree is not consulted here */
            }
            /* lane ln of c is re-keyed (its chargers had W > 0 on it and froze, so it is pending: marked
             * here all the same) */
            if (s->cx[c].pmask == 0) {
                pend_push(s, c);
            }
            s->cx[c].pmask |= PEND_MARK | ((1u << ln) & 7u);
            if (check_below) {
                lanes_flush(s, level);
            } else {
                lanes_flush_nn(s, level);
            }
            tree_update(s);
        }
    }
    /* A started charger has the value its END or its freeze gave (every started one has one of the two:
     * one growing keeps W > 0 on its lanes, so the loop ends only once none grows). One not started has
     * no value: fill_take gives it its minimum, also to one without events (min >= hi) that no lane froze,
     * which is at its ceiling hi: hi floored to its grid is at most min, so max(that, min) = min. */
    /* bits of events never read (the bitmaps are zero outside a fill) */
    if (large) {
        memset(bm_start + is, 0, (size_t)(n_words - is) * sizeof(uint64_t));
    }
    if (lazy_end) {
        memset(bm_end + ie, 0, (size_t)(n_words - ie) * sizeof(uint64_t));
    }
}

/* fill_take's table of the single root's run[]: the lowest per set of used phases, [8] the power lane */
static void root_table(dlb_site *s)
{
    if (s->single_root) {
        const int64_t *rr = s->cx[0].run; /* circuit 0 is a root: parents come first */
        const int64_t r0 = rr[0], r1 = rr[1], r2 = rr[2], r01 = min64(r0, r1);
        int64_t *const t = s->top_rmin;
        t[0] = INF;
        t[1] = r0;
        t[2] = r1;
        t[3] = r01;
        t[4] = r2;
        t[5] = min64(r0, r2);
        t[6] = min64(r1, r2);
        t[7] = min64(r01, r2);
        t[8] = rr[DLB_LANE_POWER];
    }
}

/* The end of a class's fill: each charger's share floored to its grid, then the top-up. A function of
 * its own (called per class by dlb_step) keeps progressive_fill's frame, the deepest, small. */
static void fill_take(dlb_site *s, const int32_t *group, int32_t n_group)
{
    /* Each charger's share floored to its grid, taken from run[] per leaf circuit (the pending sums of
     * the leaves, then run_flush up the tree: the same integer sums as a run_take per charger). The
     * chargers the top-up below can give more (ideal < hi) are listed per pass (0: those already counted
     * above their share, 1: the others) and set of used phases, each list in group order (built from
     * the group's end: items[i] is the next group index i's list). */
    int32_t *const head = s->top_head, *const nxt = s->items;
    int64_t *const bstep = s->top_step;
    for (int b = 0; b < 16; b++) {
        head[b] = -1;
        bstep[b] = INF;
    }
    for (int32_t i = n_group - 1; i >= 0; i--) {
        int32_t k = group[i];
        charger_scratch *x = &s->kx[k];
        const int64_t step = x->step_sw & INT32_MAX; /* step_ma (charger_scratch's copy) */
        const int64_t mn = x->min_ma;
        int64_t v = mn;
        if (x->started) { /* else at its minimum (see the fill's end); val >= min >= 1: C's remainder floors */
            const int64_t val = x->value;
            /* max(val floored to its grid, min) is above min exactly when val >= min + step (min is on the
             * grid, dlb_config_error): tested on val, the branch need not wait for the division */
            if (val >= mn + step) {
                v = val - val % step;
                lanes_pend_run(s, k, v - mn);
            }
        }
        x->ideal = v;
        if (v < x->hi) { /* s's arrays indexed directly: no pointers to keep in registers */
            const int32_t b = (x->m > v ? 0 : 8) + (int32_t)(x->used & 7u);
            nxt[i] = s->top_head[b];
            s->top_head[b] = i;
            s->top_step[b] = min64(s->top_step[b], step);
        }
    }
    run_flush(s);
    root_table(s);
    /* What flooring to the step grid left stays in the group before any lower class: first to the
     * chargers already counted above their share (keeping costs nothing and nothing churns), then to the
     * others, each pass in admission order (the lists merged by group index). ideal is on the grid, so
     * extra > 0 needs room >= step: a used lane of the path's root (or its power lane) below that
     * already settles it at 0, as run_room would. With one root its minimum per set of used lanes is
     * tabled (again after each take), and a whole list is dropped once it is below the list's smallest
     * step (run[] only falls): its chargers are not visited. */
    for (int pass = 0; pass < 2; pass++) {
        int32_t *const hd = head + pass * 8;
        const int64_t *const bs = bstep + pass * 8;
        uint32_t live = 0;
        for (uint32_t m = 0; m < 8; m++) {
            live |= (uint32_t)(hd[m] >= 0) << m;
        }
        int recheck = s->single_root;
        while (live != 0) {
            /* without data-dependent branches (which lists are live varies from step to step): a list
             * already dropped is dropped again (no change) */
            if (recheck) {
                recheck = 0;
                const int64_t rp = s->top_rmin[8];
                for (uint32_t m = 0; m < 8; m++) {
                    const uint32_t drop = (uint32_t)(s->top_rmin[m] < bs[m]) | (uint32_t)(rp < bs[m]);
                    live &= ~(drop << m);
                }
                if (live == 0) {
                    break;
                }
            }
            uint32_t mb = 0;
            int32_t i = INT32_MAX;
            for (uint32_t m = 0; m < 8; m++) {
                if (((live >> m) & 1u) && hd[m] < i) {
                    i = hd[m];
                    mb = m;
                }
            }
            hd[mb] = nxt[i];
            if (nxt[i] < 0) {
                live &= ~(1u << mb);
            }
            const int32_t k = group[i];
            charger_scratch *x = &s->kx[k];
            const int64_t step = x->step_sw & INT32_MAX;
            if (s->single_root) {
                if (s->top_rmin[x->used & 7u] < step || s->top_rmin[8] < step * x->n_used) {
                    continue;
                }
            } else {
                int32_t depth;
                const int32_t *path = path_of(s, k, &depth);
                const int64_t *rr = s->cx[path[depth - 1]].run;
                const uint32_t used = x->used;
                if (((used & 1u) && rr[0] < step) || ((used & 2u) && rr[1] < step) ||
                    ((used & 4u) && rr[2] < step) || rr[DLB_LANE_POWER] < step * x->n_used) {
                    continue;
                }
            }
            int64_t room = run_room(s, k, x->hi - x->ideal);
            int64_t extra = floor_grid(x->ideal + max64(room, 0), step) - x->ideal;
            if (extra > 0) {
                run_take(s, k, x->used, x->n_used, extra);
                x->ideal += extra;
                root_table(s);
                recheck = s->single_root;
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* stages 7-8: real headroom */

typedef struct {
    int64_t room;
    int32_t lane; /* binding lane id (ROOM_UNBAL set if the unbalance limit binds) or -1 */
} room_t;

/* The lowest headroom over charger k's lanes, scanned in room_of's order (path, then L1, L2, L3, power,
 * then the unbalance lanes) with a strict "<" from ROOM_NONE: *lane_out is the first lane holding the
 * minimum (bit 30 set if it is an unbalance lane), or -1 if none is below ROOM_NONE. The walk also
 * takes `take` from each used lane's hr after reading it (transition's pay; 0 elsewhere). */
#define ROOM_NONE (INF / 4) /* above any real headroom; times 3 (phases) still fits in int64 */
#define ROOM_UNBAL (1 << 30) /* lane ids are < 4 * DLB_MAX_CIRCUITS */
DLB_INLINE static int64_t path_scan(dlb_site *s, int32_t k, int64_t own, int64_t take, int32_t *lane_out)
{
    const charger_scratch *x = &s->kx[k];
    const uint32_t used = x->used;
    int32_t depth;
    const int32_t *path = path_of(s, k, &depth);
    struct {
        int64_t room;
        int32_t lane, unbal;
    } r = {ROOM_NONE, -1, 0};
    /* Lanes are scanned in the same order (path, then L1, L2, L3, power) with the same strict "<" in each
     * of the three walks below (all three phases, one, two), so the binding lane is the same one. What
     * pay(s, k, take, .) takes from hr is taken in the same walk (each lane read first). floor(h / n) < room
     * <=> h < room * n (n > 0): divide only when the power lane binds; an uncapped power lane holds INF and
     * never does. The general walk (the last) gives the same answer for every used set; the two before it
     * are its cases without offsets or a variable n, kept because they save ~0.9K instructions per step
     * (N = 1,000 bench, measured) where the target is within a few percent. */
    circuit_scratch *const cx = s->cx;
    const int64_t n = x->n_used;
    if (used == 7u) { /* all three phases (n = 3): no unused lane, no unbalance lane */
        const int64_t take3 = take * 3;
        for (int32_t i = 0; i < depth; i++) {
            const int32_t c = path[i];
            int64_t *hr = cx[c].hr;
            const int64_t h0 = hr[0], h1 = hr[1], h2 = hr[2], hp = hr[DLB_LANE_POWER];
            hr[0] = h0 - take;
            hr[1] = h1 - take;
            hr[2] = h2 - take;
            hr[DLB_LANE_POWER] = hp - take3;
            if (h0 < r.room) {
                r.room = h0;
                r.lane = c * 4;
            }
            if (h1 < r.room) {
                r.room = h1;
                r.lane = c * 4 + 1;
            }
            if (h2 < r.room) {
                r.room = h2;
                r.lane = c * 4 + 2;
            }
            if (hp < r.room * 3) {
                r.room = fdiv(hp, 3);
                r.lane = c * 4 + DLB_LANE_POWER;
            }
        }
        *lane_out = r.lane;
        return r.room;
    }
    if (n == 1) { /* one phase p: its lane and the power lane (floor(h / 1) = h) */
        const int32_t p = lowest_lane[used];
        for (int32_t i = 0; i < depth; i++) {
            const int32_t c = path[i];
            int64_t *hr = cx[c].hr;
            const int64_t h = hr[p], hp = hr[DLB_LANE_POWER];
            hr[p] = h - take;
            hr[DLB_LANE_POWER] = hp - take;
            if (h < r.room) {
                r.room = h;
                r.lane = c * 4 + p;
            }
            if (hp < r.room) {
                r.room = hp;
                r.lane = c * 4 + DLB_LANE_POWER;
            }
        }
    } else {
        /* an unused phase reads as hr + INF (phase headroom is far below INF in magnitude, so that is
         * never below room): one add and compare per lane, no test of used */
        const int64_t off0 = (used & 1u) ? 0 : INF, off1 = (used & 2u) ? 0 : INF, off2 = (used & 4u) ? 0 : INF;
        const int64_t t0 = (used & 1u) ? take : 0, t1 = (used & 2u) ? take : 0, t2 = (used & 4u) ? take : 0;
        for (int32_t i = 0; i < depth; i++) {
            const int32_t c = path[i];
            int64_t *hr = cx[c].hr;
            const int64_t h0 = hr[0], h1 = hr[1], h2 = hr[2], hp = hr[DLB_LANE_POWER];
            const int64_t v0 = h0 + off0, v1 = h1 + off1, v2 = h2 + off2;
            hr[0] = h0 - t0;
            hr[1] = h1 - t1;
            hr[2] = h2 - t2;
            hr[DLB_LANE_POWER] = hp - take * n;
            if (v0 < r.room) {
                r.room = v0;
                r.lane = c * 4;
            }
            if (v1 < r.room) {
                r.room = v1;
                r.lane = c * 4 + 1;
            }
            if (v2 < r.room) {
                r.room = v2;
                r.lane = c * 4 + 2;
            }
            if (hp < r.room * n) {
                r.room = fdiv(hp, n);
                r.lane = c * 4 + DLB_LANE_POWER;
            }
        }
    }
    if (x->n_used < DLB_PHASES && s->unbal_path[s->chg[k].circuit]) {
        for (int32_t i = 0; i < depth; i++) {
            int32_t c = path[i];
            int64_t u = s->circ[c].unbalance_limit_ma;
            if (u <= 0) {
                continue;
            }
            const circuit_scratch *cs = &s->cx[c];
            /* the least-loaded unused phase at its sure part: evl - evo (see held_count) */
            int64_t lo[DLB_PHASES] = {cs->evl[0], cs->evl[1], cs->evl[2]};
            if (s->evo_any) {
                const int64_t *eo = &s->evo[(size_t)c * DLB_PHASES];
                lo[0] -= eo[0];
                lo[1] -= eo[1];
                lo[2] -= eo[2];
            }
            if (n == 1) { /* one phase p: the lowest of the other two */
                const int32_t p = lowest_lane[used];
                const int64_t v = u + min64(lo[p == 0 ? 1 : 0], lo[p == 2 ? 1 : 2]) - cs->evl[p] - own;
                if (v < r.room) {
                    r.room = v;
                    r.lane = c * 4 + p;
                    r.unbal = 1;
                }
                continue;
            }
            int64_t low = INF;
            for (int q = 0; q < DLB_PHASES; q++) {
                if (!((used >> q) & 1u)) {
                    low = min64(low, lo[q]);
                }
            }
            for (int ph = 0; ph < DLB_PHASES; ph++) {
                if ((used >> ph) & 1u) {
                    int64_t v = u + low - cs->evl[ph] - own;
                    if (v < r.room) {
                        r.room = v;
                        r.lane = c * 4 + ph;
                        r.unbal = 1;
                    }
                }
            }
        }
    }
    *lane_out = r.lane < 0 ? -1 : r.lane | (r.unbal ? ROOM_UNBAL : 0);
    return r.room;
}

/* path_scan out of line (the memo's rare fills, room_own); transition() has it inline */
DLB_NOINLINE static int64_t path_room(dlb_site *s, int32_t k, int64_t own, int64_t take, int32_t *lane_out)
{
    return path_scan(s, k, own, take, lane_out);
}

/* how much more charger k can take from real headroom (hr, and the unbalance limits), at most want, and
 * the lane that binds (-1 if want does). The scan's first minimum over [want, lanes...] is want when
 * want <= the lanes' minimum, else the lanes' first minimum, so the want-free minimum (path_room) can be
 * remembered per leaf circuit and used-phase mask. hr[] and evl[] change only in pay() and transition(),
 * which bump the site gen (as does the start of stage 7): entries are valid while fail_gen == gen. In the
 * top-up, where most chargers find no room and pay nothing, chargers of one circuit and phases then share
 * one scan. */

/* Without unbalance lanes (all three phases used, or no unbalance limit on the path) the scan of circuit
 * c's path is c's own lanes followed by the scan of its parent's path, so the first minimum is c's own
 * unless the parent's entry for the same phases is strictly lower: entries are filled from the nearest
 * valid ancestor down, one circuit's lanes each, and the circuits near the root, shared by every leaf,
 * are scanned once per mask instead of once per leaf. An ancestor of such a circuit has no unbalance
 * lanes either (unbal_path is inherited downwards), so its entry has the same meaning. */
/* The memo entry of charger k's leaf and phases, computed when void; out of line, so that room_of's
 * usual case (a valid entry) is inline in the stages without growing dlb_step's frame. */
DLB_NOINLINE static void room_memo(dlb_site *s, int32_t k)
{
    circuit_scratch *const cx = s->cx;
    const int32_t c = s->chg[k].circuit;
    const uint32_t used = s->kx[k].used;
    const int64_t n = s->kx[k].n_used;
    const uint64_t gen = s->gen;
    if (n < DLB_PHASES && s->unbal_path[c]) {
        int32_t ml;
        cx[c].fail[used].amount = path_room(s, k, 0, 0, &ml);
        cx[c].fail_lane[used] = ml;
        cx[c].fail[used].gen = gen;
        return;
    }
    const int32_t *path = s->path + (size_t)c * DLB_MAX_DEPTH;
    const int32_t depth = s->plen[c];
    int32_t i = 1; /* path[0] = c: its entry is void */
    while (i < depth && cx[path[i]].fail[used].gen != gen) {
        i++;
    }
    int64_t room = ROOM_NONE;
    int32_t lane = -1;
    if (i < depth) {
        room = cx[path[i]].fail[used].amount;
        lane = cx[path[i]].fail_lane[used];
    }
    const int64_t off0 = (used & 1u) ? 0 : INF, off1 = (used & 2u) ? 0 : INF, off2 = (used & 4u) ? 0 : INF;
    for (int32_t j = i - 1; j >= 0; j--) {
        const int32_t a = path[j];
        circuit_scratch *cs = &cx[a];
        const int64_t *hr = cs->hr;
        /* own lanes in scan order with a strict "<" (unused phases read as hr + INF, see path_room) */
        int64_t v = hr[0] + off0;
        int32_t ln = 0;
        if (hr[1] + off1 < v) {
            v = hr[1] + off1;
            ln = 1;
        }
        if (hr[2] + off2 < v) {
            v = hr[2] + off2;
            ln = 2;
        }
        const int64_t hp = hr[DLB_LANE_POWER];
        if (hp < v * n) {
            v = n == 1 ? hp : fdiv(hp, n);
            ln = DLB_LANE_POWER;
        }
        if (v <= room) { /* ties go to the earlier lane: c's own */
            room = v;
            lane = a * 4 + ln;
        }
        cs->fail[used].amount = room;
        cs->fail_lane[used] = lane;
        cs->fail[used].gen = gen;
    }
}

/* one entry of room_fill: circuit c's own first minimum (v, lane) for mask u, or its parent's if lower */
static inline void room_put(circuit_scratch *cs, const circuit_scratch *ps, uint32_t u, int64_t v, int32_t lane,
                            uint64_t gen)
{
    if (ps != NULL && ps->fail[u].amount < v) { /* ties go to the earlier lane: c's own */
        v = ps->fail[u].amount;
        lane = ps->fail_lane[u];
    }
    cs->fail[u].amount = v;
    cs->fail_lane[u] = lane;
    cs->fail[u].gen = gen;
}

/* room_put for a circuit whose unbalance limit is the only one on its path: its unbalance lane (uv, ulane),
 * scanned after every other lane, binds only if strictly lower */
static inline void room_put_unbal(circuit_scratch *cs, const circuit_scratch *ps, uint32_t u, int64_t v, int32_t lane,
                                  int64_t uv, int32_t ulane, uint64_t gen)
{
    if (ps != NULL && ps->fail[u].amount < v) {
        v = ps->fail[u].amount;
        lane = ps->fail_lane[u];
    }
    if (uv < v) {
        v = uv;
        lane = ulane | ROOM_UNBAL;
    }
    cs->fail[u].amount = v;
    cs->fail_lane[u] = lane;
    cs->fail[u].gen = gen;
}

/* room_fill for circuit c, ps its parent's scratch (NULL for a root); capped: has_power(s, c) (a constant at
 * each call). Without a cap hr's power lane holds INF less what stages 7-8 took (transition's takes and
 * pay's costs, each at most 3 * 2^21 per charger: below 2^40 in all), while a phase's headroom is within
 * about 2^50 of 0 (sums of int32 currents over at most 2^16 chargers and 2^12 circuits): the power lane
 * is never the lowest, nor below three times a phase's, so its compares are left out. */
DLB_INLINE static void room_fill_one(dlb_site *s, int32_t c, const circuit_scratch *ps, uint64_t gen,
                                     const int capped)
{
    circuit_scratch *cs = &s->cx[c];
    const int64_t h0 = cs->hr[0], h1 = cs->hr[1], h2 = cs->hr[2], hp = cs->hr[DLB_LANE_POWER];
    const int32_t c4 = c * 4;
    /* the first minimum of the three phases by selects and arithmetic (the data decide: branches here
     * mispredicted some 60 times a step at N = 1000) */
    const int32_t b1 = h1 < h0;
    int64_t v = b1 ? h1 : h0;
    int32_t ln = b1;
    const int32_t b2 = h2 < v;
    v = b2 ? h2 : v;
    ln = (ln & (b2 - 1)) | (b2 << 1); /* b2 ? 2 : ln */
    if (capped && hp < v * 3) {
        v = fdiv(hp, 3);
        ln = DLB_LANE_POWER;
    }
    room_put(cs, ps, 7u, v, c4 + ln, gen);
    if (s->unbal_path[c]) {
        if (ps != NULL && s->unbal_path[s->circ[c].parent]) {
            return; /* more than one unbalance limit may be on its path: left to room_memo */
        }
        /* the first unbalance limit on the path is c's own: one phase p used, it allows
         * limit + min(evl - evo of the other two) - evl[p] (evo: see held_count) */
        const int64_t lim = s->circ[c].unbalance_limit_ma;
        const int64_t e0 = cs->evl[0], e1 = cs->evl[1], e2 = cs->evl[2];
        int64_t l0 = e0, l1 = e1, l2 = e2;
        if (s->evo_any) {
            const int64_t *eo = &s->evo[(size_t)c * DLB_PHASES];
            l0 -= eo[0];
            l1 -= eo[1];
            l2 -= eo[2];
        }
        if (!capped) {
            room_put_unbal(cs, ps, 1u, h0, c4, lim + min64(l1, l2) - e0, c4, gen);
            room_put_unbal(cs, ps, 2u, h1, c4 + 1, lim + min64(l0, l2) - e1, c4 + 1, gen);
            room_put_unbal(cs, ps, 4u, h2, c4 + 2, lim + min64(l0, l1) - e2, c4 + 2, gen);
            return;
        }
        room_put_unbal(cs, ps, 1u, hp < h0 ? hp : h0, c4 + (hp < h0 ? DLB_LANE_POWER : 0), lim + min64(l1, l2) - e0,
                       c4, gen);
        room_put_unbal(cs, ps, 2u, hp < h1 ? hp : h1, c4 + (hp < h1 ? DLB_LANE_POWER : 1), lim + min64(l0, l2) - e1,
                       c4 + 1, gen);
        room_put_unbal(cs, ps, 4u, hp < h2 ? hp : h2, c4 + (hp < h2 ? DLB_LANE_POWER : 2), lim + min64(l0, l1) - e2,
                       c4 + 2, gen);
        return;
    }
    if (!capped) {
        room_put(cs, ps, 1u, h0, c4, gen);
        room_put(cs, ps, 2u, h1, c4 + 1, gen);
        room_put(cs, ps, 4u, h2, c4 + 2, gen);
        return;
    }
    room_put(cs, ps, 1u, hp < h0 ? hp : h0, c4 + (hp < h0 ? DLB_LANE_POWER : 0), gen);
    room_put(cs, ps, 2u, hp < h1 ? hp : h1, c4 + (hp < h1 ? DLB_LANE_POWER : 1), gen);
    room_put(cs, ps, 4u, hp < h2 ? hp : h2, c4 + (hp < h2 ? DLB_LANE_POWER : 2), gen);
}

/* The entries stage 8 reads, filled before it in one pass over the circuits (a parent comes before its
 * children) for each single phase and for all three: per circuit and mask its own lanes and its parent's
 * entry, without the per-charger lookup of a lazy fill. Single phases below a second unbalance limit on
 * the path, and any entry after a pay, are left to room_memo. With a single root (circuit 0: parents come
 * first) every other circuit has a parent: its entries need no test for one. */
static void room_fill(dlb_site *s)
{
    circuit_scratch *const cx = s->cx;
    const uint64_t gen = s->gen;
    const int32_t *const hpw = s->hp;
    if (s->single_root) {
        room_fill_one(s, 0, NULL, gen, 1);
        for (int32_t c = 1; c < s->nc; c++) {
            const circuit_scratch *ps = &cx[s->circ[c].parent];
            if (hpw[c] != 0) {
                room_fill_one(s, c, ps, gen, 1);
            } else {
                room_fill_one(s, c, ps, gen, 0);
            }
        }
        return;
    }
    for (int32_t c = 0; c < s->nc; c++) {
        room_fill_one(s, c, s->circ[c].parent != DLB_NONE ? &cx[s->circ[c].parent] : NULL, gen, 1);
    }
}

/* leaf and used: charger k's circuit scratch and used phases */
static inline room_t room_of(dlb_site *s, int32_t k, const circuit_scratch *leaf, uint32_t used, int64_t want)
{
    if (leaf->fail[used].gen != s->gen) {
        room_memo(s, k);
    }
    const int64_t mv = leaf->fail[used].amount;
    const int32_t ml = leaf->fail_lane[used];
    room_t r = {want, -1};
    if (mv < want) {
        r.room = mv;
        r.lane = ml;
    }
    return r;
}

/* room_of for a charger whose unbalance room is measured from own below its counted level (a charger
 * cut in the transition, counted up to its target in hr, in the top-up): no memo */
static room_t room_own(dlb_site *s, int32_t k, int64_t want, int64_t own)
{
    int32_t ml;
    const int64_t mv = path_room(s, k, own, 0, &ml);
    room_t r = {want, -1};
    if (mv < want) {
        r.room = mv;
        r.lane = ml;
    }
    return r;
}

/* first lane of charger k that was overloaded before this step's grants (initial headroom < 0); the
 * per-step mask of overloaded lanes on each circuit's path (over_path) settles the usual "none" at once */
static int32_t overloaded_lane(const dlb_site *s, int32_t k)
{
    const uint32_t used = s->kx[k].used;
    if ((s->over_path[s->chg[k].circuit] & (used | (1u << DLB_LANE_POWER))) == 0) {
        return -1;
    }
    int32_t depth;
    const int32_t *path = path_of(s, k, &depth);
    for (int32_t i = 0; i < depth; i++) {
        int32_t c = path[i];
        uint32_t m = s->over_own[c] & (used | (1u << DLB_LANE_POWER));
        if (m != 0) {
            return c * 4 + lowest_lane[m];
        }
    }
    return -1;
}

/* charger k takes cost more of real headroom (hr); its EV load (evl) rises by real: cost, 0 for a
 * reservation, more for a raise above a reservation */
static void pay(dlb_site *s, int32_t k, int64_t cost, int64_t real)
{
    const charger_scratch *x = &s->kx[k];
    if (cost <= 0 && real <= 0) {
        return;
    }
    cost = max64(cost, 0);
    real = max64(real, 0);
    s->gen++; /* hr[] changes: room_of's memo is void */
    const uint32_t used = x->used;
    const int64_t a0 = cost * (int64_t)(used & 1u), a1 = cost * (int64_t)((used >> 1) & 1u),
                  a2 = cost * (int64_t)((used >> 2) & 1u), an = cost * x->n_used;
    const int64_t b0 = real * (int64_t)(used & 1u), b1 = real * (int64_t)((used >> 1) & 1u),
                  b2 = real * (int64_t)((used >> 2) & 1u);
    int32_t depth;
    const int32_t *path = path_of(s, k, &depth);
    circuit_scratch *const cx = s->cx;
    for (int32_t i = 0; i < depth; i++) {
        circuit_scratch *cs = &cx[path[i]];
        cs->hr[0] -= a0;
        cs->hr[1] -= a1;
        cs->hr[2] -= a2;
        cs->hr[DLB_LANE_POWER] -= an;
        cs->evl[0] += b0;
        cs->evl[1] += b1;
        cs->evl[2] += b2;
    }
}

static void set_limit(dlb_charger_output *o, room_t r, int32_t reason)
{
    if (r.lane < 0) {
        o->reason = reason;
        o->limit_circuit = DLB_NONE;
        o->limit_lane = DLB_NONE;
        return;
    }
    o->reason = (r.lane & ROOM_UNBAL) != 0 ? DLB_REASON_UNBALANCE : reason;
    o->limit_circuit = (r.lane & (ROOM_UNBAL - 1)) >> 2; /* lane / 4 and lane % 4: lane >= 0 here */
    o->limit_lane = r.lane & 3;
}

/* set_limit(o, {., lane}, DLB_REASON_CIRCUIT), the unbalance reason from the lane's bit 30 (ROOM_UNBAL);
 * returns the limit circuit */
static inline int32_t set_limit_circuit(dlb_charger_output *o, int32_t lane)
{
    _Static_assert(ROOM_UNBAL == 1 << 30 && DLB_REASON_UNBALANCE - DLB_REASON_CIRCUIT == 8, "reason from bit 30");
    if (lane < 0) {
        o->reason = DLB_REASON_CIRCUIT;
        o->limit_circuit = DLB_NONE;
        o->limit_lane = DLB_NONE;
        return DLB_NONE;
    }
    const int32_t c = (lane >> 2) & ((ROOM_UNBAL >> 2) - 1);
    o->reason = DLB_REASON_CIRCUIT + ((lane >> 27) & 8);
    o->limit_circuit = c;
    o->limit_lane = lane & 3;
    return c;
}

/* set_limit_circuit for a lane >= 0 (bit 31 clear: bit 30, ROOM_UNBAL, is its top bit) */
static inline void set_limit_lane(dlb_charger_output *o, int32_t lane)
{
    const uint32_t u = (uint32_t)lane;
    o->reason = DLB_REASON_CIRCUIT + 8 * (int32_t)(u >> 30);
    o->limit_circuit = (int32_t)((u & (ROOM_UNBAL - 1)) >> 2);
    o->limit_lane = lane & 3;
}

/* for a candidate listed in stage 9 (can_switch_phases, mode 1: nothing changes either before the call) */
static void switch_up(dlb_site *s, int32_t k, int64_t spk, int64_t now)
{
    charger_state *st = &s->ks[k];
    charger_cold *cd = &s->kcold[k];
    const dlb_charger *kc = &s->chg[k];
    const dlb_params *p = &s->p;
    if (cd->switches >= p->max_phase_switches) {
        return;
    }
    /* room for three phases at the minimum on the whole path (an uncapped power lane holds INF in hr
     * and passes); the walk stops at the first lane without */
    int room = spk == kc->max_ma;
    if (room) {
        const int64_t mn = kc->min_ma;
        const int32_t p1 = kc->phase_map[1], p2 = kc->phase_map[2];
        int32_t depth;
        const int32_t *path = path_of(s, k, &depth);
        for (int32_t i = 0; i < depth; i++) {
            const int64_t *hr = s->cx[path[i]].hr;
            if (hr[p1] < mn || hr[p2] < mn || hr[DLB_LANE_POWER] < 2 * mn) {
                room = 0;
                break;
            }
        }
    }
    if (!room) {
        cd->up_since = TNONE;
        return;
    }
    if (cd->up_since == TNONE) {
        cd->up_since = now;
    } else if (now - cd->up_since >= p->phase_switch_hold_ms &&
               (st->last_switch == TNONE || now - st->last_switch >= p->phase_switch_hold_ms)) {
        st->mode = 3;
        cd->switches++;
        st->last_switch = now;
        cd->up_since = TNONE;
    }
}

static void remember(dlb_site *s, int32_t k, int32_t kind, int32_t spk, int64_t now)
{
    charger_state *st = &s->ks[k];
    if (spk < st->sp) {
        /* The EV may still apply the higher value for follow_time_ms. Holds form a staircase (values
         * fall as expiries rise); a new hold hides the lower ones; at most DLB_HOLDS entries, the two
         * oldest merged conservatively (larger value, later expiry). */
        charger_cold *cd = &s->kcold[k];
        int32_t n = 0;
        int keep0 = 0; /* the head (index 0) is kept, at index 0 again */
        for (int32_t i = 0; i < cd->n_holds; i++) {
            if (cd->hold_until[i] > now && cd->hold_sp[i] > st->sp) {
                keep0 |= i == 0;
                cd->hold_sp[n] = cd->hold_sp[i];
                cd->hold_until[n] = cd->hold_until[i];
                n++;
            }
        }
        cd->hold_sp[n] = st->sp;
        cd->hold_until[n] = now + s->p.follow_time_ms;
        n++;
        /* hold_lo: what the head is sure to keep until its expiry: its own value unless merged */
        int32_t lo = keep0 ? cd->hold_lo : cd->hold_sp[0];
        if (n > DLB_HOLDS) {
            /* the merged head keeps the older value to the younger one's expiry; until then the rule is
             * only sure of the younger one's value */
            lo = cd->hold_sp[1];
            cd->hold_until[0] = cd->hold_until[1];
            for (int32_t i = 1; i + 1 < n; i++) {
                cd->hold_sp[i] = cd->hold_sp[i + 1];
                cd->hold_until[i] = cd->hold_until[i + 1];
            }
            n--;
        }
        cd->n_holds = n;
        cd->hold_lo = lo;
        st->hold_end = TNONE;
        for (int32_t i = 0; i < n; i++) {
            st->hold_end = max64(st->hold_end, cd->hold_until[i]);
        }
    }
    if (spk > 0 && st->sp == 0) {
        st->on_since = now;
        st->off_since = TNONE;
        st->wait_since = TNONE;
        charger_cold *cd = &s->kcold[k];
        if (cd->n_starts == DLB_MAX_STARTS) {
            memmove(cd->starts, cd->starts + 1, (DLB_MAX_STARTS - 1) * sizeof(int64_t));
            cd->n_starts--;
        }
        cd->starts[cd->n_starts++] = now;
        /* starts are ascending, so the ones within the hour are a suffix: at least M of them
         * (M = max_starts_per_hour) while the M-th latest is less than an hour old */
        const int32_t cap = s->p.max_starts_per_hour;
        st->cap_until = cap > 0 && cd->n_starts >= cap ? cd->starts[cd->n_starts - cap] + HOUR_MS : TNONE;
    } else if (spk == 0 && st->sp > 0) {
        st->off_since = now;
        st->on_since = TNONE;
    }
    if (kind == KIND_DEMAND && spk == 0 && st->wait_since == TNONE) {
        st->wait_since = now;
    }
    if (kind == KIND_NODEMAND) {
        st->wait_since = TNONE;
        if (st->probing) {
            stop_probe(s, k);
        }
    }
    st->sp = spk;
}

/* stage 7 for charger k whose target t is above its counted draw m: it rises as far as real headroom
 * allows, and keeps reserved what it still waits for (the top-up must not hand it to someone else). Both
 * takes are t - m of headroom in all ((sp - m)+ raised, t - max(sp, m) reserved), whatever the room:
 * taken in the scan's walk, which reads each lane first (no memo: this voids its entries). The EV load
 * rises by (sp - m)+, in a second walk only when some circuit on the path has an unbalance limit (evl is
 * read only on such circuits). */
DLB_NOINLINE static void transition(dlb_site *s, int32_t k, int64_t t, dlb_charger_output *o)
{
    charger_scratch *x = &s->kx[k];
    const dlb_charger *kc = &s->chg[k];
    const int64_t m = x->m;
    int32_t ml;
    const int64_t mv = path_scan(s, k, 0, t - m, &ml);
    s->gen++; /* hr[] changed: room_of's memo is void */
    room_t r = {t - m, -1};
    if (mv < t - m) {
        r.room = mv;
        r.lane = ml;
    }
    /* floor_grid of a value >= 0 (m >= 0) on a step > 0: C's division floors it */
    const int64_t step = x->step_sw & INT32_MAX;
    const int64_t v = (m + max64(r.room, 0)) / step * step;
    const int64_t sp = v >= kc->min_ma ? v : 0;
    x->sp = (int32_t)sp;
    if (sp < t) {
        set_limit(o, r, DLB_REASON_TRANSITION);
    }
    if (sp > m && s->unbal_path[x->circ16]) {
        const uint32_t used = x->used;
        const int64_t b0 = (sp - m) * (int64_t)(used & 1u), b1 = (sp - m) * (int64_t)((used >> 1) & 1u),
                      b2 = (sp - m) * (int64_t)((used >> 2) & 1u);
        int32_t depth;
        const int32_t *path = path_of(s, k, &depth);
        for (int32_t i = 0; i < depth; i++) {
            circuit_scratch *cs = &s->cx[path[i]];
            cs->evl[0] += b0;
            cs->evl[1] += b1;
            cs->evl[2] += b2;
        }
    }
}

/* charger_scratch's configuration (circ16 ... sw1, see there), copied by dlb_init: the configuration does not change */
static void outputs_cfg(dlb_site *s)
{
    for (int32_t k = 0; k < s->nk; k++) {
        const dlb_charger *kc = &s->chg[k];
        s->kx[k].circ16 = (uint16_t)kc->circuit;
        s->kx[k].step_sw = (int32_t)((uint32_t)kc->step_ma | (kc->can_switch_phases ? 1u << 31 : 0u));
        s->kx[k].min_ma = kc->min_ma;
        s->kx[k].max_ma = kc->max_ma;
        s->kx[k].weight = (uint8_t)kc->weight;
        s->kx[k].sw1 = (uint8_t)(kc->can_switch_phases ? 1u << kc->phase_map[0] : 0u);
    }
}

/* stage 8 detail: charger k rises to min(hi, floor_grid(up)) from its counted level (sp, m or target)
 * on real headroom, r the room it was found (its binding lane names the limit if it stays below hi);
 * returns its new set-point. Out of line: rare, and nothing in the caller's loop is live across it. */
DLB_NOINLINE static int64_t raise(dlb_site *s, int32_t k, int64_t up, int64_t ev, dlb_charger_output *o, room_t r)
{
    const charger_scratch *x = &s->kx[k];
    const int64_t base = max64(ev, x->ideal);
    const int64_t v = min64(x->hi, floor_grid(up, s->chg[k].step_ma));
    pay(s, k, v - base, v - ev);
    if (v >= x->hi) {
        o->reason = x->hi_reason;
        o->limit_circuit = DLB_NONE;
        o->limit_lane = DLB_NONE;
    } else if (!(o->reason == DLB_REASON_OVERLOAD ||
                 ((o->reason == DLB_REASON_TRANSITION || o->reason == DLB_REASON_UNBALANCE) && v < x->ideal))) {
        set_limit(o, r, DLB_REASON_CIRCUIT);
    }
    return v;
}

/* Stage 1 per circuit: the sums of stages 1-3 and stage 9's alloc zeroed, the meters ingested */
DLB_NOINLINE static void circuits_in(dlb_site *s, const dlb_meter_input *meters, int64_t now)
{
    const int32_t nc = s->nc;
    if (s->evo_any) { /* the previous step's over-counts (held_count): this step's stage 1 records its own */
        memset(s->evo, 0, (size_t)nc * DLB_PHASES * sizeof(int64_t));
        s->evo_any = 0;
    }
    const dlb_circuit *const circ = s->circ;
    circuit_acc *const ca = s->ca;
    for (int32_t c = 0; c < nc; c++) {
        memset(&ca[c], 0, offsetof(circuit_acc, amask)); /* (amask is all zero already) */
        if (circ[c].has_meter) {
            ingest_meter(s, c, &meters[c], now);
        }
    }
}

/* Stage 3 per circuit, after the chargers' sums: base load, the power lane's sums, the children's sums
 * into their parent's, then run[], headroom, status and the lanes over budget. Children come after
 * their parent (parent < own index), so in descending order every circuit's sums are complete when it is
 * reached (its budgets read nothing of its parent's); the lanes over budget along each path then take
 * one pass in ascending order. */
DLB_NOINLINE static void circuit_sums(dlb_site *s, int64_t now)
{
    const dlb_params *p = &s->p;
    const int32_t nc = s->nc;
    circuit_scratch *const cx = s->cx;
    circuit_acc *const ca = s->ca;
    uint32_t *const over_own = s->over_own, *const over_path = s->over_path;
    const int32_t *const has_pw = s->hp;
    const dlb_circuit *cc = s->circ + nc;
    for (int32_t c = nc - 1; c >= 0; c--) {
        cc--; /* &s->circ[c] (a pointer step: the stride is 44 bytes) */
        circuit_scratch *cs = &cx[c];
        circuit_acc *as = &ca[c];
        int64_t a0, a1, a2; /* base */
        uint32_t status = 0; /* (set here first in a step) */
        if (cc->has_meter) {
            meter_state *ms = &s->ms[c];
            int64_t ev_seen[DLB_PHASES];
            ev_window(p, ms, as->evsum, now, ev_seen);
            if (!ms->stale) {
                a0 = ms->ma[0] - ev_seen[0];
                a1 = ms->ma[1] - ev_seen[1];
                a2 = ms->ma[2] - ev_seen[2];
            } else {
                a0 = cc->fallback_base_ma[0];
                a1 = cc->fallback_base_ma[1];
                a2 = cc->fallback_base_ma[2];
                status |= (ms->seen && now - ms->t_last <= p->meter_timeout_ms) ? DLB_CIRCUIT_METER_RECOVERING
                                                                                : DLB_CIRCUIT_METER_STALE;
            }
        } else {
            a0 = cc->fallback_base_ma[0] + as->base[0]; /* base[]: the children's, so far */
            a1 = cc->fallback_base_ma[1] + as->base[1];
            a2 = cc->fallback_base_ma[2] + as->base[2];
        }
        as->base[0] = a0;
        as->base[1] = a1;
        as->base[2] = a2;
        /* every charger adds to the power lane what it adds to its phases (stage 1 leaves that lane
         * out), and the children's sums are in by now. (fixed and meas_d are read here alone: the power
         * lane's sums are not stored.) */
        const int64_t f0 = as->fixed[0], f1 = as->fixed[1], f2 = as->fixed[2], fp = f0 + f1 + f2;
        const int64_t m0 = as->meas_d[0], m1 = as->meas_d[1], m2 = as->meas_d[2], mp = m0 + m1 + m2;
        if (cc->parent != DLB_NONE) {
            circuit_acc *ps = &ca[cc->parent];
            ps->evsum[0] += as->evsum[0];
            ps->evsum[1] += as->evsum[1];
            ps->evsum[2] += as->evsum[2];
            ps->base[0] += a0; /* (the parent's children's sum: it is reached later) */
            ps->base[1] += a1;
            ps->base[2] += a2;
            ps->fixed[0] += f0;
            ps->fixed[1] += f1;
            ps->fixed[2] += f2;
            ps->meas_d[0] += m0;
            ps->meas_d[1] += m1;
            ps->meas_d[2] += m2;
        }
        /* per lane: the budget run = cap - load (bneg: its sign), hr = that - meas_d; a lane without a cap
         * holds INF */
        const int64_t b0 = (int64_t)cc->limit_ma[0] - cc->margin_ma - a0 - f0;
        const int64_t b1 = (int64_t)cc->limit_ma[1] - cc->margin_ma - a1 - f1;
        const int64_t b2 = (int64_t)cc->limit_ma[2] - cc->margin_ma - a2 - f2;
        const int64_t h0 = b0 - m0, h1 = b1 - m1, h2 = b2 - m2;
        cs->run[0] = b0;
        cs->run[1] = b1;
        cs->run[2] = b2;
        cs->hr[0] = h0;
        cs->hr[1] = h1;
        cs->hr[2] = h2;
        cs->evl[0] = m0;
        cs->evl[1] = m1;
        cs->evl[2] = m2;
        uint32_t bneg = (uint32_t)(b0 < 0) | ((uint32_t)(b1 < 0) << 1) | ((uint32_t)(b2 < 0) << 2);
        uint32_t over = (uint32_t)(h0 < 0) | ((uint32_t)(h1 < 0) << 1) | ((uint32_t)(h2 < 0) << 2);
        if (has_pw[c] != 0) { /* has_power */
            const int64_t bp = s->power_cap[c] - (a0 + a1 + a2 + fp);
            const int64_t hp = bp - mp;
            cs->run[DLB_LANE_POWER] = bp;
            cs->hr[DLB_LANE_POWER] = hp;
            bneg |= (uint32_t)(bp < 0) << DLB_LANE_POWER;
            over |= (uint32_t)(hp < 0) << DLB_LANE_POWER;
        } else {
            cs->run[DLB_LANE_POWER] = cs->hr[DLB_LANE_POWER] = INF;
        }
        cs->bneg = bneg;
        cs->status = status | ((uint32_t)(bneg != 0) * DLB_CIRCUIT_BASE_OVERLOAD) |
                     ((uint32_t)(over != 0) * DLB_CIRCUIT_OVERLOADED);
        over_own[c] = over;
    }
    s->gen += (uint64_t)nc; /* run[] set afresh (once per circuit): every cached path minimum and first_short
                               answer is void */
    for (int32_t c = 0; c < nc; c++) {
        const int32_t par = s->circ[c].parent;
        over_path[c] = over_own[c] | (par != DLB_NONE ? over_path[par] : 0u);
    }
}

/* Stage 9's circuit outputs, children before parents (a parent's index is lower): a circuit's allocated
 * sum is complete when it is reached, is output, and then added to its parent's. Out of line: its loops
 * keep their own registers (in dlb_step they spilled). */
DLB_NOINLINE static void circuit_outputs(dlb_site *s, dlb_circuit_output *cout, int by_mask)
{
    circuit_scratch *const cx = s->cx;
    circuit_acc *const ca = s->ca;
    const int32_t nc = s->nc;
    /* alloc[] holds the lost chargers' set-points (stage 1) and, unless by_mask, the admitted ones'; else
     * amask[] holds those per used-phase mask: phase p's sum is over the masks with bit p set (a pass of
     * its own: in the loop below the compiler's vector code made it cost twice as much) */
    for (int32_t c = 0; by_mask && c < nc; c++) {
        circuit_acc *as = &ca[c];
        int64_t *al = as->alloc;
        const int64_t *am = as->amask;
        const int64_t a37 = am[3] + am[7];
        al[0] += am[1] + am[5] + a37;
        al[1] += am[2] + am[6] + a37;
        al[2] += am[4] + am[5] + am[6] + am[7];
        memset(as->amask, 0, sizeof(as->amask));
    }
    for (int32_t c = nc - 1; c >= 0; c--) {
        const circuit_scratch *cs = &cx[c];
        const circuit_acc *as = &ca[c];
        dlb_circuit_output *co = &cout[c];
        const int64_t a0 = as->alloc[0], a1 = as->alloc[1], a2 = as->alloc[2];
        const int64_t h0 = cs->hr[0], h1 = cs->hr[1], h2 = cs->hr[2];
        const int64_t b0 = as->base[0], b1 = as->base[1], b2 = as->base[2];
        /* v + 2^31 (mod 2^64) < 2^32 exactly when v fits in int32: the nine values of a circuit usually
         * do, and then need no clamping */
        const uint64_t h = (uint64_t)1 << 31;
        const uint64_t any = ((uint64_t)a0 + h) | ((uint64_t)a1 + h) | ((uint64_t)a2 + h) | ((uint64_t)h0 + h) |
                             ((uint64_t)h1 + h) | ((uint64_t)h2 + h) | ((uint64_t)b0 + h) | ((uint64_t)b1 + h) |
                             ((uint64_t)b2 + h);
        if ((any >> 32) == 0) {
            co->allocated_ma[0] = (int32_t)a0;
            co->allocated_ma[1] = (int32_t)a1;
            co->allocated_ma[2] = (int32_t)a2;
            co->headroom_ma[0] = (int32_t)h0;
            co->headroom_ma[1] = (int32_t)h1;
            co->headroom_ma[2] = (int32_t)h2;
            co->base_ma[0] = (int32_t)b0;
            co->base_ma[1] = (int32_t)b1;
            co->base_ma[2] = (int32_t)b2;
        } else {
            co->allocated_ma[0] = clamp32(a0);
            co->allocated_ma[1] = clamp32(a1);
            co->allocated_ma[2] = clamp32(a2);
            co->headroom_ma[0] = clamp32(h0);
            co->headroom_ma[1] = clamp32(h1);
            co->headroom_ma[2] = clamp32(h2);
            co->base_ma[0] = clamp32(b0);
            co->base_ma[1] = clamp32(b1);
            co->base_ma[2] = clamp32(b2);
        }
        co->power_headroom_ma = has_power(s, c) ? clamp32(cs->hr[DLB_LANE_POWER]) : INT32_MAX;
        co->status = cs->status;
        const int32_t par = s->circ[c].parent;
        if (par != DLB_NONE) {
            ca[par].alloc[0] += a0;
            ca[par].alloc[1] += a1;
            ca[par].alloc[2] += a2;
        }
    }
}

/* stage 7 for admitted charger k with an overloaded lane on its path and a target above its set-point: the
 * lane is already overloaded, so nobody on it is raised above its draw; its target (ideal from here on) is
 * cut to max(sp, floor_grid(drawn)) if above. Out of line: rare. */
DLB_NOINLINE static void overload_cut(dlb_site *s, int32_t k, dlb_charger_output *o)
{
    charger_scratch *x = &s->kx[k];
    const dlb_charger *kc = &s->chg[k];
    const int64_t cut = max64(s->ks[k].sp, floor_grid(x->drawn, kc->step_ma));
    if (x->ideal > cut) {
        room_t ro = {0, overloaded_lane(s, k)};
        set_limit(o, ro, DLB_REASON_OVERLOAD);
        x->ideal = cut < kc->min_ma ? 0 : cut;
    }
}

/* Stage 7 (see dlb_step) for the admitted chargers in admission order. Out of line, with transition() and its walk
 * inline: its loop keeps its own registers. */
DLB_NOINLINE static void transition_pass(dlb_site *s, dlb_charger_output *out, int32_t n_adm)
{
    const int32_t nc = s->nc;
    const int32_t *const adm = s->adm;
    charger_scratch *const kx = s->kx;
    /* a lane overloaded before the grants anywhere: else no charger is cut for it (two circuits a word) */
    uint64_t over2 = 0;
    int32_t c = 0;
    for (; c + 1 < nc; c += 2) {
        uint64_t w;
        memcpy(&w, &s->over_own[c], sizeof(w));
        over2 |= w;
    }
    const uint32_t any_over = (uint32_t)over2 | (uint32_t)(over2 >> 32) | (c < nc ? s->over_own[c] : 0u);
    if (any_over == 0) { /* the usual case: a charger at or below its counted draw costs a test */
        /* two at a time (the loop's own work is most of it): transition() changes no ideal or m */
        int32_t i = 0;
        for (; i + 1 < n_adm; i += 2) {
            const int32_t k0 = adm[i], k1 = adm[i + 1];
            const int64_t t0 = kx[k0].ideal, t1 = kx[k1].ideal;
            const int64_t m0 = kx[k0].m, m1 = kx[k1].m;
            if (t0 > m0) {
                transition(s, k0, t0, &out[k0]);
            }
            if (t1 > m1) {
                transition(s, k1, t1, &out[k1]);
            }
        }
        if (i < n_adm && kx[adm[i]].ideal > kx[adm[i]].m) {
            transition(s, adm[i], kx[adm[i]].ideal, &out[adm[i]]);
        }
        return;
    }
    /* Two at a time as above: a cut reads and writes only its own charger's target and outputs (and the
     * overload masks), which no transition touches, so cutting the second before the first's transition
     * changes nothing. An overloaded lane on its path (over_path says whether there is one) matters only if
     * the target is above the cut, and the cut is at least its set-point: the rest is left for that case. */
    const uint32_t *const over_path = s->over_path;
    const charger_state *const ks = s->ks;
    int32_t i = 0;
    for (; i + 1 < n_adm; i += 2) {
        const int32_t k0 = adm[i], k1 = adm[i + 1];
        charger_scratch *x0 = &kx[k0], *x1 = &kx[k1];
        if ((over_path[x0->circ16] & (x0->used | (1u << DLB_LANE_POWER))) != 0 && x0->ideal > ks[k0].sp) {
            overload_cut(s, k0, &out[k0]);
        }
        if ((over_path[x1->circ16] & (x1->used | (1u << DLB_LANE_POWER))) != 0 && x1->ideal > ks[k1].sp) {
            overload_cut(s, k1, &out[k1]);
        }
        if (x0->ideal > x0->m) {
            transition(s, k0, x0->ideal, &out[k0]);
        }
        if (x1->ideal > x1->m) {
            transition(s, k1, x1->ideal, &out[k1]);
        }
    }
    if (i < n_adm) {
        const int32_t k = adm[i];
        charger_scratch *x = &kx[k];
        if ((over_path[x->circ16] & (x->used | (1u << DLB_LANE_POWER))) != 0 && x->ideal > ks[k].sp) {
            overload_cut(s, k, &out[k]);
        }
        if (x->ideal > x->m) {
            transition(s, k, x->ideal, &out[k]);
        }
    }
}

/* stage 8 for charger k (sp != 0, below hi) whose memo entry (mv, ml) leaves room to rise: the top-up's
 * general case, with the room of a charger cut in the transition measured from its EV load (room_own,
 * never above the memo's: its unbalance lanes count own more, the rest are the same); returns its
 * set-point. Out of line: rare. */
DLB_NOINLINE static int64_t topup_general(dlb_site *s, int32_t k, dlb_charger_output *o, int64_t sp, int64_t mv,
                                          int32_t ml)
{
    const charger_scratch *x = &s->kx[k];
    const dlb_charger *kc = &s->chg[k];
    /* up to m it is counted already; above, real headroom pays (none while a lane is short, e.g. reserved
     * for a charger that waits); a charger cut in the transition has what it waits for reserved: counted
     * up to target */
    const int64_t ev = max64(sp, x->m); /* its EV load: the unbalance room counts from it */
    const int64_t base = max64(ev, x->ideal); /* ideal: its target */
    const int64_t want = max64(x->hi - base, 0);
    room_t r = {want, -1};
    if (base > ev && x->n_used < DLB_PHASES && s->unbal_path[kc->circuit]) {
        r = room_own(s, k, want, base - ev);
    } else if (mv < want) { /* room_of's answer from its entry (mv, ml) */
        r.room = mv;
        r.lane = ml;
    }
    /* sp is on the step grid (as ideal, a cut, a previous set-point and floor_grid's values are), hi > sp:
     * v = min(hi, floor_grid(base + room)) > sp exactly when base + room reaches sp + step, so the division
     * is left for a raise */
    if (r.room >= 0 && base + r.room >= sp + kc->step_ma) {
        return raise(s, k, base + r.room, ev, o, r);
    }
    const int32_t why = o->reason;
    if (!(why == DLB_REASON_OVERLOAD ||
          ((why == DLB_REASON_TRANSITION || why == DLB_REASON_UNBALANCE) && sp < x->ideal))) {
        set_limit_circuit(o, r.lane);
    }
    return sp;
}

/* Stages 8 and 9 for the admitted chargers in admission order (see dlb_step); returns the number of
 * switch-up candidates, kept in adm[0..n_sw) (written behind the reading position).
 * A charger below hi rises only if its room r = min(want, lanes) (want = max(hi - base, 0) >= 0) is
 * >= 0 and base + r reaches sp + step: never when the lanes' minimum mv (its memo entry) is below 0 or
 * base + mv is below sp + step, the usual case under scarcity. Then its limit is the memo's lane (if
 * mv < want) whatever its counted levels, and even a charger cut in the transition (room_own) needs no
 * walk: its room is at most mv, so it does not rise either, and it keeps the limit the transition set
 * (its reason is TRANSITION or UNBALANCE and sp < target). Every path leaves the circuit its limit names
 * (marked LIMITING) in o->limit_circuit, and marks it itself: the usual one (the memo's lane) without
 * reading it back or testing it for DLB_NONE. */
DLB_INLINE static int32_t topup_pass(dlb_site *s, dlb_charger_output *out, int32_t n_adm, int64_t now,
                                    const int by_mask)
{
    int32_t *const adm = s->adm;
    int32_t n_sw = 0;
    for (int32_t i = 0; i < n_adm; i++) {
        const int32_t k = adm[i];
        const charger_scratch *x = &s->kx[k];
        dlb_charger_output *o = &out[k];
        /* its circuit, step and can_switch_phases from charger_scratch's copy: no dlb_charger read; and no
         * charger_state read in the usual cases: its mode is o->phases (stage 4 wrote st->mode there for
         * every charger, switch_to_one sets both to 1, and nothing else changes either before switch_up,
         * after this pass) and its stored set-point st->sp is x->sp0 (see charger_scratch) */
        const int32_t step_sw = x->step_sw;
        /* its output set-point is 0 until here (stage 4), so spk is sp (0 adds nothing to the sums). A
         * charger whose target is at or below its counted draw m has it as set-point (stage 7), the others
         * the transition's; its counted level base is then max(sp, m, target) = max(m, target) */
        const int64_t target = x->ideal, m = x->m;
        int64_t sp = x->sp;
        sp = target <= m ? target : sp; /* x->sp read anyway: a select, not a branch */
        if (sp == 0) { /* stage 9 alone (its own copy: below, spk != 0 is known) */
            const int32_t lc = o->limit_circuit;
            if (lc != DLB_NONE) {
                s->cx[lc].status |= DLB_CIRCUIT_LIMITING;
            }
            if ((step_sw < 0) & (o->phases == 1)) {
                adm[n_sw++] = k; /* n_sw <= i: adm[i] was read */
            }
            if (x->sp0 != 0 || s->ks[k].wait_since == TNONE) {
                remember(s, k, KIND_DEMAND, 0, now);
            }
            continue;
        }
        {
            circuit_scratch *leaf = &s->cx[x->circ16];
            const uint32_t used = x->used;
            const int64_t hi = x->hi;
            if (sp < hi) {
                if (leaf->fail[used].gen != s->gen) { /* room_of's entry */
                    room_memo(s, k);
                }
                const int64_t mv = leaf->fail[used].amount;
                const int64_t base = max64(m, target);
                if (mv >= 0 && mv >= sp + (step_sw & INT32_MAX) - base) {
                    sp = topup_general(s, k, o, sp, mv, leaf->fail_lane[used]);
                    if (o->limit_circuit != DLB_NONE) {
                        s->cx[o->limit_circuit].status |= DLB_CIRCUIT_LIMITING;
                    }
                } else {
                    const int32_t ml = leaf->fail_lane[used];
                    /* it keeps the limit an overload or a transition cut set: admission left its reason
                     * NONE, and stage 7 sets only OVERLOAD, TRANSITION or UNBALANCE */
                    const int32_t why = o->reason;
                    if (!(why != DLB_REASON_NONE && (why == DLB_REASON_OVERLOAD || sp < target))) {
                        /* set_limit_circuit(o, mv < want ? ml : -1), want = max(hi - base, 0), without the
                         * test: hi is on the step grid (max_ma, a reclaim cap, a floor_grid'ed ramp cap)
                         * as sp is, so sp < hi gives hi >= sp + step, and here mv < 0 <= want or
                         * mv < sp + step - base <= hi - base <= want. mv < want (<= hi < ROOM_NONE) is a
                         * lane's headroom, so ml >= 0 */
                        set_limit_lane(o, ml);
                        /* its limit circuit (o->limit_circuit, >= 0: no test) is LIMITING */
                        s->cx[((uint32_t)ml & (ROOM_UNBAL - 1)) >> 2].status |= DLB_CIRCUIT_LIMITING;
                    } else if (o->limit_circuit != DLB_NONE) {
                        s->cx[o->limit_circuit].status |= DLB_CIRCUIT_LIMITING;
                    }
                }
            } else { /* at its ceiling: no limiting circuit */
                o->reason = x->hi_reason;
                o->limit_circuit = DLB_NONE;
                o->limit_lane = DLB_NONE;
            }
            o->setpoint_ma = (int32_t)sp;
            if (by_mask) {
                s->ca[x->circ16].amask[used] += sp;
            } else {
                int64_t *al = s->ca[x->circ16].alloc;
                al[0] += sp * (int64_t)(used & 1u);
                al[1] += sp * (int64_t)((used >> 1) & 1u);
                al[2] += sp * (int64_t)((used >> 2) & 1u);
            }
        }
        const int32_t spk = (int32_t)sp;
        if ((step_sw < 0) & (o->phases == 1)) { /* one branch, usually not taken */
            adm[n_sw++] = k; /* n_sw <= i: adm[i] was read */
        }
        if (spk != x->sp0) { /* spk != 0: on or already marked waiting is no change */
            remember(s, k, KIND_DEMAND, spk, now);
        }
    }
    return n_sw;
}

/* ------------------------------------------------------------------------------------------------ */

int dlb_step(dlb_site *s, int64_t now, const dlb_meter_input *meters, const dlb_charger_input *chargers,
             dlb_charger_output *out, dlb_circuit_output *cout)
{
    if (s == NULL || meters == NULL || out == NULL || cout == NULL || (chargers == NULL && s->nk > 0)) {
        return DLB_ERR_ARGUMENT;
    }
    if (now < 0 || (s->last_now != TNONE && now < s->last_now)) {
        return DLB_ERR_TIME;
    }
    const dlb_params *p = &s->p;
    const int32_t nc = s->nc, nk = s->nk;
    const int64_t dt = s->last_now == TNONE ? 0 : now - s->last_now;
    s->last_now = now;
    /* The arrays in locals: a store through a member of one of them may alias a field of *s as far as
     * the compiler knows, which would otherwise reload the base pointers in every iteration. They are
     * read again at each stage (RELOAD) so that none is live across a whole step: that keeps dlb_step's
     * frame small (the stack bound in dlb.h). */
    const dlb_charger *chg;
    charger_scratch *kx;
    uint64_t *key;
    int32_t *adm;
#define RELOAD() (chg = s->chg, kx = s->kx, key = s->akey, adm = s->adm)
    RELOAD();

    /* 1. ingest, 2. classify and 3. the per-charger sums of base, fixed and measured demand, in one
     * pass over the chargers: each charger's stages use only its own state (and meters are ingested
     * first), so the result is the stage-by-stage one; under the default parameters 4. (ceilings and
     * holds) joins the pass, block by block (stages_fair) */
    circuits_in(s, meters, now);
    s->n_steps++;
    s->n_todo = 0; /* a member, not a local: keeps dlb_step's frame small (the stack bound in dlb.h) */
    int32_t n_items;
    if (p->policy == DLB_POLICY_FAIR && p->ramp_up_ma_per_s == 0) { /* the default: in blocks (claims_deferred) */
        int32_t n_rest = 0;
        s->n_defer = 0;
        for (int32_t b0 = 0; b0 < nk; b0 += STAGES_BLOCK) {
            const int32_t b1 = nk - b0 > STAGES_BLOCK ? b0 + STAGES_BLOCK : nk;
            const dlb_charger_input *const ce = chargers + b1;
            s->in_stage4 = 0;
            for (const dlb_charger_input *ci = charger_pass(s, chargers, now, dt, b0, b1); ci != ce;) {
                const int32_t k = (int32_t)(ci - chargers);
                charger_general(s, k, ci, now, dt);
                ci = charger_pass(s, chargers, now, dt, k + 1, b1);
            }
            s->in_stage4 = 1;
            n_rest += ceilings_fair(s, out, now, b0, b1);
        }
        n_rest += claims_deferred(s, out, now);
        circuit_sums(s, now);
        n_items = nk - n_rest;
    } else {
        if (nk > 0) { /* (chargers may be NULL without chargers) */
            const dlb_charger_input *const ce = chargers + nk;
            for (const dlb_charger_input *ci = charger_pass(s, chargers, now, dt, 0, nk); ci != ce;) {
                const int32_t k = (int32_t)(ci - chargers);
                charger_general(s, k, ci, now, dt);
                ci = charger_pass(s, chargers, now, dt, k + 1, nk);
            }
        }
        circuit_sums(s, now);
        /* 4. ceilings and holds */
        n_items = ceilings_general(s, out, now, dt);
    }

    /* 5. admission: eligible chargers in the kept order, repaired by key */
    RELOAD();
    sort_pairs(s->pairs, s->pairs_tmp, (size_t)nk, (size_t)n_items, key); /* kept: the next step's start (akey[]) */
    const int32_t n_adm = admit(s, out, now, n_items);

    /* 6. ideal fill above the minimum */
    if (p->policy == DLB_POLICY_FAIR) {
        progressive_fill(s, s->adm, n_adm);
        fill_take(s, s->adm, n_adm);
    } else if (p->policy == DLB_POLICY_PRIORITY) {
        /* classes from the highest priority down; within a class, admission order (a counting sort) */
        int32_t *cnt = s->prio_count;
        memset(cnt, 0, sizeof(s->prio_count));
        for (int32_t i = 0; i < n_adm; i++) {
            cnt[255 - chg[adm[i]].priority + 1]++;
        }
        for (int32_t b = 0; b < 256; b++) {
            cnt[b + 1] += cnt[b];
        }
        for (int32_t i = 0; i < n_adm; i++) {
            int32_t k = adm[i];
            s->group[cnt[255 - chg[k].priority]++] = k;
        }
        int32_t lo = 0;
        while (lo < n_adm) {
            int32_t hi = lo, prio = chg[s->group[lo]].priority;
            while (hi < n_adm && chg[s->group[hi]].priority == prio) {
                hi++;
            }
            progressive_fill(s, s->group + lo, hi - lo);
            fill_take(s, s->group + lo, hi - lo);
            lo = hi;
        }
    } else {
        for (int32_t i = 0; i < n_adm; i++) {
            int32_t k = adm[i];
            charger_scratch *x = &kx[k];
            const dlb_charger *kc = &chg[k];
            int64_t room = run_room(s, k, x->hi - kc->min_ma);
            int64_t v = floor_grid(kc->min_ma + max64(room, 0), kc->step_ma);
            run_take(s, k, x->used, x->n_used, v - kc->min_ma);
            x->ideal = v;
        }
    }

    /* 7. transition safety: each admitted charger gets its ideal only as far as real headroom allows */
    s->gen++; /* from here the leaf memo holds room_of's answers (first_short's are void) */
    /* the admitted chargers' set-points summed per used-phase mask (amask) cost an add per charger and
     * a fold and zeroing per circuit (about 30 instructions), per phase (alloc) three multiply-adds per
     * charger (about 13 more): the masks where the admitted chargers outnumber the circuits 2.5 to 1 */
    const int by_mask = 2 * n_adm >= 5 * nc;
    transition_pass(s, out, n_adm);
    /* 8. top-up: what real headroom is left goes to admitted chargers in admission order, and
     * 9. remember and outputs in the same pass: a charger's set-point is final once its top-up is done
     * (no later charger's top-up reads it), remember() touches only its own charger's state, and the
     * sums read outputs. Only the switch-up (next step) must wait for the final headroom (hr): its
     * candidates are kept in adm[0..n_sw), written behind the reading position.
     * remember() for the admitted chargers and the listed others (each touches only its own charger's
     * state and, stopping a probe, clears its meter's owner only if that is itself: any order gives
     * the same state; switch_up and remember() touch disjoint fields). It changes nothing when a
     * demanding charger keeps its set-point and is on or already marked waiting (the usual case), nor
     * for a lost one (its output is its set-point).
     * Allocated current and LIMITING: only admitted chargers have a set-point here (lost ones were
     * summed in stage 1, every other one is at 0) and only they and the paused ones (marked at
     * admission) name a limiting circuit. */
    if (2 * n_adm >= nc) { /* else most entries would not be read: the lazy fill costs less */
        room_fill(s);
    }
    s->n_sw = by_mask ? topup_pass(s, out, n_adm, now, 1) : topup_pass(s, out, n_adm, now, 0);
    for (int32_t i = 0; i < s->n_sw; i++) {
        const int32_t k = adm[i];
        switch_up(s, k, out[k].setpoint_ma, now);
    }
    for (int32_t i = 0; i < s->n_todo; i++) {
        const int32_t k = (int32_t)s->key[nk + i];
        remember(s, k, kx[k].kind, out[k].setpoint_ma, now);
    }
    circuit_outputs(s, cout, by_mask);
#undef RELOAD
    return DLB_OK;
}

int64_t dlb_session_energy_wh(const dlb_site *s, size_t k)
{
    if (s == NULL || k >= (size_t)s->nk) {
        return 0;
    }
    return session_energy_wh(s, (int32_t)k);
}
