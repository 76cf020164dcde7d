/*
 * dlb.h - deterministic dynamic load balancing core for EV chargers.
 *
 * Every control cycle the caller hands in the latest meter and charger readings and the current time;
 * dlb_step() splits the site's capacity among the chargers, per circuit and per phase, and returns a
 * set-point, a phase count and a reason for every charger, and allocated current, headroom and status
 * for every circuit.
 *
 * Design rules (see DESIGN.md, "The allocator contract"):
 *   - C11, integers only: currents in milliamps (mA), time in milliseconds (ms), power in watts (W),
 *     energy in watt-hours (Wh). No floating point anywhere.
 *   - No heap, no clock, no I/O, no global mutable state. The caller owns all memory: dlb_memory_size()
 *     tells how many bytes a site needs, dlb_init() builds the instance inside that buffer. Copying or
 *     freeing the buffer is the caller's business; the library keeps no pointer outside it.
 *   - Deterministic: the same configuration, inputs and history give bit-identical outputs on every
 *     platform. All tie-breaks are by index. dlb.c is mirrored stage for stage by the readable
 *     specification core/reference.py (C adds only shortcuts shown to visit the same order: presorted
 *     fill events, batched heap re-keys and lane updates, cached path minima; and skips of work shown
 *     to change nothing, each with its proof in a comment); differential tests enforce equality, and a
 *     C test pins the outputs of long random runs.
 *   - Bounded: for N chargers, C circuits, tree depth D (<= DLB_MAX_DEPTH = 16) and P distinct
 *     priority classes among the admitted chargers (P = 1 unless the policy is PRIORITY; P <= 256),
 *     one dlb_step() costs O(N log N + N*D*log C + C*P) time:
 *       N log N   the admission sort (insertion sort repairs last step's order in O(N + moves); once
 *                 far moves would pass 2N + 64 pairs it sorts the e pairs out of place alone and
 *                 merges them back, O(N + e log e)) and, per priority class of g chargers,
 *                 O(g) for its fill events (radix passes over their ranks in lists presorted at
 *                 init; END levels lowered by a reclaim cap or the ramp sorted in O(g log g); a
 *                 class of g >= N/64 chargers marks its ranks in bitmaps and reads them in order,
 *                 O(g + N/64) = O(g), instead);
 *       N*D*log C every walk of a charger up its path (admission, fill events, headroom), and the
 *                 fill's tournament tree of circuits keyed by their lowest lane (one re-key per
 *                 circuit touched by a batch of same-level events, O(log C) each, or an O(C) rebuild
 *                 when many are);
 *       C*P       per-circuit passes (base load, lanes, outputs) and each class's fill set-up.
 *     With the header's limits (D <= 16, C <= 4096, P <= 256) that is O(N log N + C). No recursion;
 *     stack use is constant: < 512 bytes (gcc -O2 x86-64: dlb_step 224 + ceilings_fair 128 +
 *     ceilings_one_fair 128 + stop_probe 8 = 488; dlb_init 448 + merge_sort 56 = 504; `make -C csrc test`
 *     checks the bound on gcc's call graph).
 *
 * Phases. The site has three phases L1, L2, L3 (indices 0..2). A circuit constraint has four lanes:
 * the three phase currents and, when the circuit has a power cap, the sum of the three phase currents
 * (lane 3, "power"): power_limit_w * 1000 / voltage_v milliamps summed over the phases.
 *
 * The allocation of one step, in order (each stage is described where it is implemented in dlb.c):
 *   1. ingest: fresh readings replace stored ones; out-of-range readings are rejected (treated as
 *      missing). Ages drive the failsafe ladder: a meter older than meter_timeout_ms makes its circuit
 *      "meter stale" (base load = fallback_base_ma) until fresh data has held for recovery_hold_ms; a
 *      charger silent for charger_timeout_ms is "lost": its set-point is held and it is counted at
 *      max(last set-point, failsafe_ma) on every installed phase until fresh data has held for
 *      recovery_hold_ms. A meter or charger that has never answered is stale/lost from the start; its
 *      first reading is trusted at once (there was no failure to recover from).
 *   2. base load per circuit and phase = meter - sum of measured EV currents of the (non-lost) chargers
 *      below the meter, taking the smallest such sum seen within meter_latency_ms (the meter's value
 *      may predate an EV's start; a late meter then never makes the base look smaller than it is). A
 *      circuit without a meter has base = fallback_base_ma (its own non-EV load, default 0) + the base of
 *      its child circuits. A lost charger's draw is not subtracted (it stays in
 *      the base), because its reserve is counted on top: conservative.
 *   Counted phases: a demanding charger loads the site phases of the conductors of its phase mode;
 *   once it has been on for follow_time_ms (and follow_time_ms has passed since a phase switch), a
 *   charging charger whose measured conductors show some at or above active_threshold_ma loads only
 *   those (a 1-phase EV on a 3-phase charger).
 *   3. admission (scarcity): demanding chargers (connected_idle, charging, ev_suspended) are sorted by
 *      the admission key (must-stay by min_on_ms, priority class for the "priority" policy, starving
 *      waiters, sticky holders within the rotation period, then the policy key; ties by index) and
 *      admitted at min_ma while the minimum fits on every lane of every circuit on the path. A
 *      switchable 3-phase charger that does not fit at 3 phases tries 1 phase.
 *   4. ideal fill: admitted chargers grow from min_ma: weighted max-min fair progressive filling for
 *      "fair" (and within each class for "priority"), greedy in admission order for fifo/edf/llf.
 *   5. transition safety (decreases first, increases after): a demanding charger is counted at
 *      m = max(measured draw, its previous set-point, any set-point lowered within follow_time_ms),
 *      because the EV may still apply any of them. (The lowered set-points are kept per charger on a
 *      staircase of 4 entries, with no heap: a fifth reduction within follow_time_ms merges the two
 *      oldest into the larger value with the later expiry, so m may count more than this rule until
 *      then, never less: it only holds chargers back. The unbalance limit measures from the least-loaded
 *      unused phase's EV load as the rule is sure to count it, so the over-count never lifts that one.)
 *      With real headroom = limit - margin - base - fixed loads - sum of m, each charger in admission
 *      order gets its ideal value only as far as real headroom allows (keeping a value it already had
 *      costs nothing); a charger not yet drawing its minimum waits (reason TRANSITION) for others to
 *      follow their reductions, and what it still waits for stays reserved on its lanes. On a lane
 *      that is already overloaded (sum of m above it), no charger is raised above max(its previous
 *      set-point, its measured draw).
 *   6. top-up (work conservation): real headroom left after the grants and the reservations goes to
 *      admitted chargers in admission order. Reported headroom is what is left after both.
 *
 * Invariants (tested on random sites against this core and the reference):
 *   - capacity: for every circuit c, phase p: base(c,p) + fixed(c,p) + sum over chargers k under c
 *     drawing on p of max(setpoint(k), m(k)) <= limit(c,p) - margin(c), with m as in stage 5 (so in
 *     particular >= max(setpoint, measured)); when the counted draws already exceed it, no charger on
 *     (c,p) is raised above max(its previous set-point, its measured draw) and base + sum of set-points
 *     fits.
 *   - minimum current: every set-point is 0 or within [min_ma, max_ma] and a multiple of step_ma.
 *   - determinism, no heap, bounded cost.
 */
#ifndef DLB_H
#define DLB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DLB_VERSION_MAJOR 1
#define DLB_VERSION_MINOR 0

/* ---- limits (checked by dlb_init; a configuration outside them is rejected, never truncated) ---- */
#define DLB_PHASES 3                  /* L1, L2, L3 */
#define DLB_LANES 4                   /* L1, L2, L3, power (sum of phases) */
#define DLB_LANE_POWER 3
#define DLB_MAX_CIRCUITS 4096
#define DLB_MAX_CHARGERS 65535
#define DLB_MAX_DEPTH 16              /* root = depth 1 */
#define DLB_MAX_CURRENT_MA 2000000    /* 2 kA: any configured or measured current, absolute */
#define DLB_MAX_POWER_W 100000000     /* 100 MW */
#define DLB_MAX_WEIGHT 16             /* weights 1..16 keep the fair-share arithmetic exact (see DLB_Q) */
#define DLB_MAX_STARTS 16             /* max_starts_per_hour <= 16 (history ring per charger) */
#define DLB_MAX_DURATION_MS 86400000  /* any configured duration <= 24 h */
#define DLB_Q 720720                  /* lcm(1..16): fair-share levels are exact integers for every weight */
#define DLB_NONE (-1)

/* ---- enumerations ---- */
typedef enum {
    DLB_POLICY_FAIR = 0,     /* weighted max-min fair */
    DLB_POLICY_PRIORITY = 1, /* strict priority classes (higher first), weighted max-min fair within a class */
    DLB_POLICY_FIFO = 2,     /* arrival order, greedy */
    DLB_POLICY_EDF = 3,      /* earliest departure first, greedy; sessions without departure last */
    DLB_POLICY_LLF = 4       /* least laxity first, greedy; laxity = time to departure - time to finish */
} dlb_policy;

typedef enum {
    DLB_STATE_DISCONNECTED = 0,
    DLB_STATE_CONNECTED_IDLE = 1, /* EV plugged, not drawing yet: it is offered current */
    DLB_STATE_CHARGING = 2,
    DLB_STATE_EV_SUSPENDED = 3,   /* EV declines current (full, own schedule): offered, then reclaimed */
    DLB_STATE_FAULT = 4,
    DLB_STATE_UNAVAILABLE = 5     /* out of service by operator or charger */
} dlb_charger_state;

typedef enum {
    DLB_REASON_NONE = 0,          /* not limited (never reported for a demanding charger) */
    DLB_REASON_CHARGER_MAX = 1,   /* at its own max_ma */
    DLB_REASON_CIRCUIT = 2,       /* limited by a circuit lane: limit_circuit / limit_lane */
    DLB_REASON_EV = 3,            /* reclaimed: the EV draws less, capped at its draw + margin */
    DLB_REASON_RAMP = 4,          /* ramp-up rate */
    DLB_REASON_SCARCITY = 5,      /* paused: its minimum does not fit (limit_circuit / limit_lane) */
    DLB_REASON_ROTATION = 6,      /* paused: its turn ended, another EV charges (rotation_period_ms) */
    DLB_REASON_MIN_OFF = 7,       /* paused: held off for min_off_ms after a pause */
    DLB_REASON_START_CAP = 8,     /* paused: max_starts_per_hour reached */
    DLB_REASON_TRANSITION = 9,    /* waiting until other EVs have followed their reductions */
    DLB_REASON_UNBALANCE = 10,    /* limited by the circuit's phase unbalance limit */
    DLB_REASON_FAILSAFE = 11,     /* charger lost: set-point held, counted at max(set-point, failsafe) */
    DLB_REASON_RECOVERING = 12,   /* charger answers again, waiting for recovery_hold_ms */
    DLB_REASON_NOT_CONNECTED = 13,
    DLB_REASON_FAULT = 14,
    DLB_REASON_UNAVAILABLE = 15,
    DLB_REASON_OVERLOAD = 16      /* base load alone exceeds a lane of a circuit on its path */
} dlb_reason;

/* circuit status bits */
#define DLB_CIRCUIT_OK 0u
#define DLB_CIRCUIT_OVERLOADED 1u       /* base + measured draws exceed a lane (before this step's cut) */
#define DLB_CIRCUIT_BASE_OVERLOAD 2u    /* base load alone exceeds a lane: every charger below is at 0 */
#define DLB_CIRCUIT_METER_STALE 4u      /* meter stale: fallback base load in use */
#define DLB_CIRCUIT_METER_RECOVERING 8u /* meter answers again; fallback kept until recovery_hold_ms */
#define DLB_CIRCUIT_LIMITING 16u        /* a lane of this circuit limits at least one charger */

/* charger flags */
#define DLB_CHARGER_ADMITTED 1u
#define DLB_CHARGER_LOST 2u
#define DLB_CHARGER_RECLAIMED 4u
#define DLB_CHARGER_PROBING 8u
#define DLB_CHARGER_SWITCHED 16u        /* phase count changed in this step */
#define DLB_CHARGER_NARROWED 32u        /* its draw was counted on its measured conductors only (see
                                           "Counted phases"; a switch-down keeps the flag) */

typedef enum {
    DLB_OK = 0,
    DLB_ERR_ARGUMENT = -1,  /* NULL pointer or count out of range */
    DLB_ERR_MEMORY = -2,    /* buffer too small or misaligned */
    DLB_ERR_CONFIG = -3,    /* configuration outside the limits; dlb_config_error() tells which field */
    DLB_ERR_TIME = -4       /* now_ms earlier than the previous step's, or negative */
} dlb_error;

/* ---- configuration ---- */

/* Site-wide parameters. All durations in ms, currents in mA. dlb_params_default() fills the defaults. */
typedef struct {
    int32_t voltage_v;              /* nominal phase voltage for power caps and energy; default 230 */
    int32_t policy;                 /* dlb_policy; default FAIR */
    int32_t meter_timeout_ms;       /* meter reading older than this is stale; default 10000 */
    int32_t charger_timeout_ms;     /* charger silent for this long is lost; default 10000 */
    int32_t recovery_hold_ms;       /* fresh data must hold this long to leave stale/lost; default 10000 */
    int32_t rotation_period_ms;     /* turn length under scarcity; default 900000 (15 min) */
    int32_t min_on_ms;              /* a started charger is not paused before this, unless capacity
                                       demands it; default 120000 */
    int32_t min_off_ms;             /* a paused charger is not restarted before this; default 60000 */
    int32_t max_starts_per_hour;    /* 0 = no cap, else 1..DLB_MAX_STARTS; default 6 */
    int32_t ramp_up_ma_per_s;       /* 0 = immediate; increases above min_ma limited to this rate */
    int32_t reclaim_hold_ms;        /* drawing clearly below the set-point this long -> reclaimed; default 60000 */
    int32_t reclaim_margin_ma;      /* "clearly below" and cap = draw + margin; default 1000 */
    int32_t probe_interval_ms;      /* a reclaimed charger may probe upward after this; default 300000 */
    int32_t phase_switch_hold_ms;   /* 1p->3p needs room for this long, and no switch within it; default 300000 */
    int32_t max_phase_switches;     /* per session; default 4 */
    int32_t active_threshold_ma;    /* a conductor above this counts as drawing; default 1000 */
    int32_t follow_time_ms;         /* how long an EV may take to apply a set-point (PWM update spacing
                                       + EV reaction): a lowered set-point stays counted this long;
                                       default 10000 */
    int32_t meter_latency_ms;       /* how much older a meter's value may be than the charger readings
                                       (set it to the meter's refresh interval when that is longer
                                       than the cycle): base load subtracts the smallest EV draw seen
                                       within this window, so an EV that started after the meter's
                                       sample never makes the base look smaller than it is. Costs
                                       under-allocation for this long after EVs ramp up. Default 0:
                                       the meter and charger readings are taken as simultaneous */
} dlb_params;

/* One circuit (fuse). Circuits form a tree: parent < own index (the parent comes first); the roots have
 * parent DLB_NONE. Depth <= DLB_MAX_DEPTH. */
typedef struct {
    int32_t parent;                     /* index of the parent circuit, or DLB_NONE */
    int32_t limit_ma[DLB_PHASES];       /* per-phase limit, >= 0 */
    int32_t margin_ma;                  /* safety margin subtracted from every phase limit, >= 0 */
    int32_t power_limit_w;              /* 0 = none; else cap on the sum of phase currents via voltage_v */
    int32_t fallback_base_ma[DLB_PHASES]; /* metered: base load assumed while the meter is stale;
                                             unmetered: the circuit's own non-EV load (default 0) */
    int32_t unbalance_limit_ma;         /* 0 = none; else max difference between phases of EV load */
    int32_t has_meter;                  /* 1 if a meter measures this circuit's total current */
} dlb_circuit;

/* One charger (EVSE connector). Conductor i of the charger is wired to site phase phase_map[i]. */
typedef struct {
    int32_t circuit;                    /* index of the circuit it hangs from */
    int32_t phases;                     /* installed phases: 1 or 3 */
    int32_t phase_map[DLB_PHASES];      /* site phase 0..2 per conductor; for 3 phases a permutation */
    int32_t min_ma;                     /* minimum current when charging (IEC 61851: >= 6000) */
    int32_t max_ma;                     /* maximum current, >= min_ma */
    int32_t step_ma;                    /* set-point resolution; min_ma and max_ma are multiples of it */
    int32_t priority;                   /* 0..255, higher first (policy PRIORITY) */
    int32_t weight;                     /* 1..DLB_MAX_WEIGHT, share under FAIR/PRIORITY */
    int32_t failsafe_ma;                /* the charger's own fallback current when it loses the controller */
    int32_t can_switch_phases;          /* 1 if it can switch between 1 and 3 phases */
} dlb_charger;

/* ---- per-step input ---- */

typedef struct {
    int32_t fresh;                      /* 1 = a new reading taken at this step's now_ms */
    int32_t current_ma[DLB_PHASES];     /* signed per-phase current; export negative */
} dlb_meter_input;

typedef struct {
    int32_t fresh;                      /* 1 = a new reading at this step's now_ms */
    int32_t state;                      /* dlb_charger_state */
    int32_t current_ma[DLB_PHASES];     /* measured current per conductor (charger order), >= 0 */
    int32_t session_update;             /* 1 = departure_in_ms / energy_need_wh below are new */
    int32_t departure_in_ms;            /* ms from now until departure; < 0 = unknown */
    int32_t energy_need_wh;             /* energy the EV needs this session; < 0 = unknown */
} dlb_charger_input;

/* ---- per-step output ---- */

typedef struct {
    int32_t setpoint_ma;                /* 0 = paused, else in [min_ma, max_ma] on the step grid */
    int32_t phases;                     /* phase count to use: 1 or 3 */
    int32_t reason;                     /* dlb_reason */
    int32_t limit_circuit;              /* circuit index behind the reason, or DLB_NONE */
    int32_t limit_lane;                 /* 0..2 phase, 3 power, or DLB_NONE */
    uint32_t flags;                     /* DLB_CHARGER_* bits */
} dlb_charger_output;

typedef struct {
    int32_t allocated_ma[DLB_PHASES];   /* sum of set-points of chargers below, per phase */
    int32_t headroom_ma[DLB_PHASES];    /* limit - margin - base - fixed - sum of max(set-point, m) - what
                                           waiting chargers keep reserved (see stage 5) */
    int32_t base_ma[DLB_PHASES];        /* base load in use (measured or fallback) */
    int32_t power_headroom_ma;          /* same for the power lane (sum of phases); INT32_MAX if no cap */
    uint32_t status;                    /* DLB_CIRCUIT_* bits */
} dlb_circuit_output;

typedef struct dlb_site dlb_site; /* opaque; lives inside the caller's buffer */

/* ---- API ---- */

/* Fills p with the documented defaults. */
void dlb_params_default(dlb_params *p);

/* Bytes needed for a site of n_circuits circuits and n_chargers chargers (0 if out of limits).
 * O(1). The buffer must be aligned to 8 bytes. The size is linear: about 2.5 kB + 1.38 kB per circuit
 * + 0.68 kB per charger on LP64 (x86-64 gcc: 794,360 bytes for 81 circuits and 1,000 chargers;
 * 7.9 MB for 786 and 10,000). Most of it is state kept between steps; the rest is per-step scratch
 * (so the stack stays small). */
size_t dlb_memory_size(size_t n_circuits, size_t n_chargers);

/* Validates the configuration and builds the site inside mem (which must hold dlb_memory_size bytes).
 * On DLB_ERR_CONFIG, *site is NULL and dlb_config_error() describes the first offending field.
 * O(N log N + C*D) (it presorts the chargers for the fill and flattens the tree's paths). Copies
 * everything it needs: the arrays passed in may be freed afterwards. */
int dlb_init(void *mem, size_t mem_size, const dlb_params *params, const dlb_circuit *circuits,
             size_t n_circuits, const dlb_charger *chargers, size_t n_chargers, dlb_site **site);

/* Why the last dlb_init on this buffer failed: scope is "params", "circuits" or "chargers", index the
 * element (-1 for params and counts), field the member ("limit_ma", "" for a count), problem a short
 * sentence. E.g. circuits[3].limit_ma: out of range. All strings are static. */
void dlb_config_error(const void *mem, const char **scope, int32_t *index, const char **field,
                      const char **problem);

/* One control cycle. meters: n_circuits entries (ignored for circuits without a meter); chargers and
 * out_chargers: n_chargers entries; out_circuits: n_circuits entries. now_ms must not decrease.
 * O(N log N + N*D*log C + C*P) as above; no allocation. */
int dlb_step(dlb_site *site, int64_t now_ms, const dlb_meter_input *meters,
             const dlb_charger_input *chargers, dlb_charger_output *out_chargers,
             dlb_circuit_output *out_circuits);

/* Energy delivered to the current session of charger k, in Wh (from measured currents and voltage_v). */
int64_t dlb_session_energy_wh(const dlb_site *site, size_t k);

#ifdef __cplusplus
}
#endif
#endif /* DLB_H */
