"""``dlbrig run``: every built-in scenario completes in both modes; fast and wire agree.

Runs are subprocesses of the installed command (what a user runs), shortened with ``--duration``;
wire mode runs on loopback, ``--speed 4``.

Fast vs wire (DESIGN.md: "results of the two modes on the same scenario and seed must agree within
the sampling tolerance"): the verdicts (which circuits ever went above their limit) and the number
of sessions must be equal; energies agree within a tolerance derived from the one thing wire mode
adds, real-time scheduling: a set-point can land up to ~one control cycle later (and the very
first cycle also connects to every device), so each charger may deliver up to about two cycles
at its maximum power more or less.  See ``energy_tolerance_kwh``.
"""
from __future__ import annotations

import csv
import json
import math

import pytest

from rig_cli_helpers import TRACEBACK, builtin_scenarios, dlbrig

SCENARIOS = builtin_scenarios()
FAST_DURATION_S = 60
WIRE_DURATION_S = 20
WIRE_SPEED = 4
#: The depot's controller polls 200 chargers over loopback TCP each cycle: ~150-250 ms of wall time,
#: which at 4x (a 250 ms wall cycle) leaves no slack when the 2 cores are shared. It runs at 2x, so
#: the cycle-keeping check below measures the controller, not the machine's load.
WIRE_SPEED_OF = {"depot": 2}

#: Environment of the comparison runs (nothing special: fast mode must be reproducible as is).
COMPARE_ENV: dict = {}


def run(scenario, out, mode, duration_s, *extra, env=None, timeout=180):
    import subprocess

    from rig_cli_helpers import DLBRIG, cli_env

    e = cli_env()
    e.update(env or {})
    if mode == "wire":
        # scenarios with instruments (showroom) enable emulated load / source outputs: armed
        # (everything here is emulated on loopback)
        extra = ("--arm", *extra)
    r = subprocess.run([*DLBRIG, "run", str(scenario), "--mode", mode, "--out", str(out),
                        "--duration", f"{duration_s}s", *map(str, extra)],
                       capture_output=True, text=True, timeout=timeout, env=e,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"dlbrig run {scenario} --mode {mode}: rc {r.returncode}\n{r.stdout}\n{r.stderr[-3000:]}"
    assert TRACEBACK not in r.stderr
    return r


def read_outputs(out):
    with open(out / "trace.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    summary = json.loads((out / "summary.json").read_text())
    return rows, summary


def check_outputs(out, scenario, mode, duration_s, min_cycles):
    rows, s = read_outputs(out)
    header, data = rows[0], rows[1:]
    assert header[0] == "t_s" and len(header) > 1
    assert len(data) >= min_cycles, f"{len(data)} trace rows"
    assert all(len(r) == len(header) for r in data), "ragged trace rows"
    t = [float(r[0]) for r in data]
    assert t == sorted(t) and t[0] < 5 and t[-1] <= duration_s
    assert s["scenario"] == scenario and s["mode"] == mode
    assert s["interrupted"] is False
    assert duration_s - 3 <= s["simulated_s"] <= duration_s
    assert s["circuits"] and all("max_over_a" in c for c in s["circuits"].values())
    for key in ("energy_delivered_kwh", "site_energy_kwh", "peak_kw", "sessions", "controller",
                "failed_transactions"):
        assert key in s, key
    assert math.isfinite(s["energy_delivered_kwh"]) and s["energy_delivered_kwh"] >= 0
    # every circuit of the summary appears in the trace's columns
    for name in s["circuits"]:
        assert f"{name}.I1_A" in header
    return rows, s


# -- 2. every built-in scenario, both modes --------------------------------------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_run_fast_every_builtin_scenario(scenario, tmp_path):
    out = tmp_path / "out"
    r = run(scenario, out, "fast", FAST_DURATION_S)
    assert "trace:" in r.stdout and "summary:" in r.stdout
    check_outputs(out, scenario, "fast", FAST_DURATION_S, min_cycles=FAST_DURATION_S // 2)


@pytest.fixture(scope="module")
def wire_runs(tmp_path_factory):
    """One shortened wire run per scenario (20 s, --speed 4; see WIRE_SPEED_OF), shared by the tests below."""
    cache = {}

    def get(scenario):
        if scenario not in cache:
            out = tmp_path_factory.mktemp(f"wire-{scenario}") / "out"
            run(scenario, out, "wire", WIRE_DURATION_S, "--speed", WIRE_SPEED_OF.get(scenario, WIRE_SPEED))
            cache[scenario] = out
        return cache[scenario]
    return get


@pytest.mark.timeout(180)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_run_wire_every_builtin_scenario(scenario, wire_runs):
    out = wire_runs(scenario)
    rows, s = check_outputs(out, scenario, "wire", WIRE_DURATION_S, min_cycles=1)
    assert s["frames"] > 0                  # it really went over the wire
    assert s["failed_transactions"] == 0    # loopback, no comm faults in the first 20 s


@pytest.mark.timeout(180)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_wire_controller_keeps_its_cycle(scenario, wire_runs):
    """Over 20 s of scenario time with a 1 s control cycle the wire controller should run most of
    its cycles; the first one (which connects to every device and configures its failsafe) must
    not eat the run."""
    out = wire_runs(scenario)
    rows, s = read_outputs(out)
    c = s["controller"]
    assert c["cycles"] >= WIRE_DURATION_S // 2, (
        f"{c['cycles']} cycles in {s['simulated_s']} s; first/max cycle {c['cycle_time_ms_max']:.0f} ms "
        f"wall, {s['speed_x_realtime']}x real time (asked {WIRE_SPEED_OF.get(scenario, WIRE_SPEED)}x)")


def test_library_is_not_empty():
    assert len(SCENARIOS) >= 10
    assert {"base_load_step", "phase_rotated", "showroom"} <= set(SCENARIOS)


# -- fast mode is reproducible --------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_fast_mode_is_reproducible_across_processes(tmp_path):
    """Same scenario, same seed, fast mode: bit-identical trace in two processes.  (Python's
    string hash is salted per process; PYTHONHASHSEED 1 vs 2 makes that explicit.)"""
    a, b = tmp_path / "a", tmp_path / "b"
    run("base_load_step", a, "fast", 60, env={"PYTHONHASHSEED": "1"})
    run("base_load_step", b, "fast", 60, env={"PYTHONHASHSEED": "2"})
    ta, tb = (p.joinpath("trace.csv").read_text().splitlines() for p in (a, b))
    diff = [(i, x, y) for i, (x, y) in enumerate(zip(ta, tb)) if x != y]
    assert not diff and len(ta) == len(tb), f"first difference, line {diff[0][0]}:\n{diff[0][1]}\n{diff[0][2]}"


# -- 3. fast vs wire ---------------------------------------------------------------------------------
#: How long a charger in wire mode may run behind the same charger in fast mode: two control
#: cycles (a set-point lands up to a cycle late), plus the core's meter_latency_s window (2 s in
#: the library: ramp-ups are held back that long after a different instant), plus 2 s of wire
#: jitter on the EV's start.
LAG_S = 2 * 1.0 + 2.0 + 2.0


def energy_tolerance_kwh(summary_fast, lag_s=LAG_S, max_kw=22.0) -> float:
    """LAG_S of a charger at 22 kW (the largest EV in the library, 3 x 32 A) per session, plus
    0.005 kWh for the summary's rounding to 1 Wh of each value."""
    n = max(1, len(summary_fast["sessions"]))
    return n * max_kw * lag_s / 3600 + 0.005


def _short_step(tmp_path):
    """base_load_step with its load step moved into the first minute (+45 s, +50 A for 10 s):
    EVs are charging then, so the main goes above its limit until the chargers follow."""
    from pathlib import Path

    import dlbrig.rig.scenario as pkg
    src = Path(pkg.__file__).parent / "library" / "base_load_step.yaml"
    text = src.read_text()
    old = 'at: "+10m", delta_a: 40, for: 10m'
    assert old in text
    p = tmp_path / "base_load_step_short.yaml"
    p.write_text(text.replace(old, 'at: "+45s", delta_a: 50, for: 10s')
                 .replace("name: base_load_step", "name: base_load_step_short"))
    return p


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """Run a scenario once per mode (60 s; wire at --speed 4) and cache the output folders."""
    cache = {}

    def get(scenario):
        if scenario not in cache:
            tmp = tmp_path_factory.mktemp(scenario)
            src = _short_step(tmp) if scenario == "short_step" else scenario
            fast, wire = tmp / "fast", tmp / "wire"
            run(src, fast, "fast", 60, env=COMPARE_ENV)
            run(src, wire, "wire", 60, "--speed", WIRE_SPEED, env=COMPARE_ENV)
            cache[scenario] = (fast, wire)
        return cache[scenario]
    return get


@pytest.mark.timeout(200)
@pytest.mark.parametrize("scenario", ["base_load_step", "showroom", "short_step"])
def test_fast_and_wire_agree(scenario, compared):
    fast, wire = compared(scenario)
    _, f = read_outputs(fast)
    _, w = read_outputs(wire)

    # verdicts: the same circuits with and without limit overshoot
    over = lambda s: {n for n, c in s["circuits"].items() if c["max_over_a"] > 0}
    assert over(f) == over(w), (f["circuits"], w["circuits"])
    if scenario == "short_step":
        assert over(f) == {"main"}         # the comparison covers a failing verdict too
        # (the size and duration of that overshoot are not compared: wire mode reacts to the step
        # one meter refresh later, and an EV that starts in that window adds its current)
    # sessions: same vehicles on the same chargers
    key = lambda s: sorted((x["vehicle"], x["charger"]) for x in s["sessions"])
    assert key(f) == key(w)
    # energy delivered (from the chargers' own energy counters, not sampled): within tolerance
    tol = energy_tolerance_kwh(f)
    assert w["energy_delivered_kwh"] == pytest.approx(f["energy_delivered_kwh"], abs=tol)
    per = {x["vehicle"]: x["delivered_kwh"] for x in f["sessions"]}
    for x in w["sessions"]:
        assert x["delivered_kwh"] == pytest.approx(per[x["vehicle"]], abs=22.0 * LAG_S / 3600 + 0.002), x
    # peak currents per circuit: the same EVs at nearly the same set-points, but wire mode lands
    # a set-point up to a cycle later and the core's meter_latency_s holds back ramp-ups for a
    # window that starts at a different instant: within 10 % of the limit. A site still ramping
    # up when the run ends may peak in its last seconds (base_load_step peaks at 58 s of 60), which
    # wire mode reaches up to LAG_S later or not at all: its peak is compared from below with fast
    # mode's peak over the run without its last LAG_S. A circuit that went over its limit peaks at
    # the disturbance, whose size depends on timing (see above).
    f_rows, _ = read_outputs(fast)
    settled_s = float(f_rows[-1][0]) - LAG_S
    for n, c in f["circuits"].items():
        if n not in over(f):
            tol_a = max(1.0, 0.1 * max(c["limit_a"]))
            low = trace_peak_a(f_rows, n, until_s=settled_s) - tol_a
            high = c["peak_a"] + tol_a
            assert low <= w["circuits"][n]["peak_a"] <= high, (n, low, w["circuits"][n]["peak_a"], high)
            assert w["circuits"][n]["peak_a"] <= max(c["limit_a"]), n
    assert w["failed_transactions"] == 0


def trace_peak_a(rows, circuit, until_s):
    """The circuit's highest true phase current in trace.csv over the rows up to ``until_s``."""
    header, data = rows[0], rows[1:]
    cols = [header.index(f"{circuit}.I{k}_A") for k in (1, 2, 3)]
    return max(float(r[c]) for r in data if float(r[0]) <= until_s for c in cols)


def _trace_energy_kwh(rows, root, voltage_v, cycle_s=1.0):
    """The root circuit's energy from trace.csv, each row held until the next row's time."""
    header, data = rows[0], rows[1:]
    cols = [header.index(f"{root}.I{k}_A") for k in (1, 2, 3)]
    t = [float(r[0]) for r in data]
    dts = [b - a for a, b in zip(t, t[1:])] + [cycle_s]
    return sum(sum(float(r[c]) for c in cols) * voltage_v / 1000 * dt / 3600
               for r, dt in zip(data, dts))


@pytest.mark.timeout(200)
@pytest.mark.parametrize("mode", ["fast", "wire"])
def test_site_energy_matches_the_trace_timeline(mode, compared):
    """summary.site_energy_kwh integrates the main's power over time; it must agree with the same
    integral over the trace's own timestamps.  Wire mode skips cycles when it falls behind (the
    first one also connects to every device) but weighs every recorded row as one full cycle, so
    time-integrated KPIs (site_energy_kwh, overshoot_a_s, time_over_s) miss the skipped time."""
    out = compared("base_load_step")[0 if mode == "fast" else 1]
    rows, s = read_outputs(out)
    expect = _trace_energy_kwh(rows, "main", 230.0)
    assert s["site_energy_kwh"] == pytest.approx(expect, rel=0.01, abs=0.002), (
        f"{mode}: summary {s['site_energy_kwh']} kWh, trace timeline {expect:.4f} kWh over "
        f"{len(rows) - 1} rows, {s['simulated_s']} s")


@pytest.mark.timeout(120)
def test_meter_older_than_charger_readings_does_not_overshoot(tmp_path):
    """Deterministic (fast mode) form of a wire-mode failure: the controller estimates the base
    load as meter - sum of measured EV currents.  When the meter value is older than the charger
    readings (a meter refreshing every 5 s here; in wire mode any read that lands after an EV
    started but before the meter's next refresh), an EV that just started is subtracted from a
    meter value that does not contain it yet, the base is under-estimated by that EV's current,
    and the set-points overshoot the fuse.  base_load_step, first 5 minutes (no load step yet)."""
    from pathlib import Path

    import dlbrig.rig.scenario as pkg
    text = (Path(pkg.__file__).parent / "library" / "base_load_step.yaml").read_text()
    old = "{circuit: main, profile: sdm630, transport: rtu, bus: rs485-1}"
    assert old in text
    slow = text.replace(old, old[:-1] + ", update_interval_s: 5}")
    # a controller configured for its meter: the core's meter_latency_s covers the refresh interval
    site_key = "  meter_latency_s: 2"
    assert site_key in slow
    p = tmp_path / "slow_meter.yaml"
    p.write_text(slow.replace(site_key, "  meter_latency_s: 5", 1))
    out = tmp_path / "out"
    run(p, out, "fast", 300)
    _, s = read_outputs(out)
    main = s["circuits"]["main"]
    assert main["max_over_a"] == 0, f"main above its 100 A limit by up to {main['max_over_a']} A " \
                                    f"for {main['time_over_s']} s with a 5 s meter refresh"
    # and without it the late meter does mislead the controller (the hazard the setting exists for)
    p.write_text(slow.replace(site_key, "  meter_latency_s: 0", 1))
    run(p, tmp_path / "out0", "fast", 300)
    _, s0 = read_outputs(tmp_path / "out0")
    assert s0["circuits"]["main"]["max_over_a"] > 0
