"""The fault registry: every fault the issue names is known, parsed from timeline lines, and
exercised by at least one certification case."""
from dlbrig.rig.certify.catalog import catalog
from dlbrig.rig.certify.runner import build_scenario
from dlbrig.rig.faults import FAULTS, faults_of_line


def test_timeline_lines_name_their_faults():
    assert faults_of_line("at +2m meter main nan for 1m") == {"meter_nan"}
    assert faults_of_line("at +60s ev cp1 leakage dc 6mA") == {"residual_dc"}
    assert faults_of_line("at +60s ev cp1 leakage ac 150mA") == {"residual_ac"}
    assert faults_of_line("+20m charger cp2 exception 4 for 10s") == {"modbus_exception"}
    assert faults_of_line("at +1m charger cp1 delay 300ms jitter 100ms") == {"delay_jitter"}
    assert faults_of_line("at 08:05 plug cp3 ev=compact_1p") == set()
    assert faults_of_line("at +3m meter main ok") == set()


def test_every_fault_is_exercised_by_the_catalog():
    used = {}
    for case in catalog():
        sc = build_scenario(case, seed=1)
        for line in (st.text for st in sc.steps):
            for f in faults_of_line(line):
                used.setdefault(f, []).append(case.id)
        for v in sc.vehicles:       # EV faults given from the start (a vehicle's `faults:`)
            for name, value in v.faults.items():
                if value:
                    used.setdefault(f"ev_{name}" if f"ev_{name}" in FAULTS else name, []).append(case.id)
        if case.probe == "malformed_frames":
            used.setdefault("malformed_frames", []).append(case.id)
    missing = sorted(set(FAULTS) - set(used))
    assert not missing, f"faults no certification case applies: {missing}"


def test_the_summary_records_every_failed_transaction(tmp_path):
    """The count of failed transactions comes with its record: when, which device, read or write,
    and the error, so a run's comm faults can be traced to the timeline step that caused them."""
    from dlbrig.rig.certify.catalog import select
    from dlbrig.rig.certify.runner import build_scenario
    from dlbrig.rig.plant import Plant
    from dlbrig.rig.runner import run_fast

    (case,) = select("COM-001")
    s = run_fast(build_scenario(case, seed=1), tmp_path / "out")
    assert s["failed_transactions"] > 0, "COM-001 takes a device off the bus"
    assert len(s["failures"]) == min(500, s["failed_transactions"])
    first = s["failures"][0]
    assert set(first) == {"t_s", "device", "op", "error"} and first["op"] in ("read", "write")
    assert first["device"] in Plant(build_scenario(case, seed=1)).devices
    assert [f["t_s"] for f in s["failures"]] == sorted(f["t_s"] for f in s["failures"])
