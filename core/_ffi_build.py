"""cffi build script for ``dlbrig.core._dlb`` (API mode, out-of-line).

The cdef below restates the public part of ``csrc/dlb.h`` that Python needs. In API mode cffi compiles
a C wrapper against the real header, so a field or type that drifts from dlb.h is a build error, not a
silent layout mismatch. State and I/O live in cffi-owned arrays: one ``dlb_step`` call per cycle.
"""
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(os.path.dirname(HERE), "csrc")

CDEF = """
#define DLB_PHASES 3
#define DLB_LANES 4
#define DLB_MAX_CIRCUITS 4096
#define DLB_MAX_CHARGERS 65535
#define DLB_MAX_DEPTH 16
#define DLB_MAX_CURRENT_MA 2000000
#define DLB_MAX_POWER_W 100000000
#define DLB_MAX_WEIGHT 16
#define DLB_MAX_STARTS 16
#define DLB_Q 720720
#define DLB_NONE -1

typedef struct {
    int32_t voltage_v; int32_t policy; int32_t meter_timeout_ms; int32_t charger_timeout_ms;
    int32_t recovery_hold_ms; int32_t rotation_period_ms; int32_t min_on_ms; int32_t min_off_ms;
    int32_t max_starts_per_hour; int32_t ramp_up_ma_per_s; int32_t reclaim_hold_ms;
    int32_t reclaim_margin_ma; int32_t probe_interval_ms; int32_t phase_switch_hold_ms;
    int32_t max_phase_switches; int32_t active_threshold_ma; int32_t follow_time_ms;
    int32_t meter_latency_ms;
} dlb_params;

typedef struct {
    int32_t parent; int32_t limit_ma[3]; int32_t margin_ma; int32_t power_limit_w;
    int32_t fallback_base_ma[3]; int32_t unbalance_limit_ma; int32_t has_meter;
} dlb_circuit;

typedef struct {
    int32_t circuit; int32_t phases; int32_t phase_map[3]; int32_t min_ma; int32_t max_ma;
    int32_t step_ma; int32_t priority; int32_t weight; int32_t failsafe_ma; int32_t can_switch_phases;
} dlb_charger;

typedef struct { int32_t fresh; int32_t current_ma[3]; } dlb_meter_input;

typedef struct {
    int32_t fresh; int32_t state; int32_t current_ma[3]; int32_t session_update;
    int32_t departure_in_ms; int32_t energy_need_wh;
} dlb_charger_input;

typedef struct {
    int32_t setpoint_ma; int32_t phases; int32_t reason; int32_t limit_circuit; int32_t limit_lane;
    uint32_t flags;
} dlb_charger_output;

typedef struct {
    int32_t allocated_ma[3]; int32_t headroom_ma[3]; int32_t base_ma[3]; int32_t power_headroom_ma;
    uint32_t status;
} dlb_circuit_output;

typedef struct dlb_site dlb_site;

void dlb_params_default(dlb_params *p);
size_t dlb_memory_size(size_t n_circuits, size_t n_chargers);
int dlb_init(void *mem, size_t mem_size, const dlb_params *params, const dlb_circuit *circuits,
             size_t n_circuits, const dlb_charger *chargers, size_t n_chargers, dlb_site **site);
void dlb_config_error(const void *mem, const char **scope, int32_t *index, const char **field,
                      const char **problem);
int dlb_step(dlb_site *site, int64_t now_ms, const dlb_meter_input *meters,
             const dlb_charger_input *chargers, dlb_charger_output *out_chargers,
             dlb_circuit_output *out_circuits);
int64_t dlb_session_energy_wh(const dlb_site *site, size_t k);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "dlbrig.core._dlb",
    '#include "dlb.h"',
    sources=[os.path.relpath(os.path.join(CSRC, "dlb.c"))],
    include_dirs=[os.path.relpath(CSRC)],
    extra_compile_args=["-std=c11", "-O2"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
