"""The ``dlbrig`` command line, as a user runs it (the installed console script, subprocesses).

Exit codes: 0 success, 1 a failed certification, 2 a usage error (click's own, or a bad
scenario file: ``error: FILE:LINE: FIELD: PROBLEM`` on stderr, never a traceback).
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from rig_cli_helpers import SMALL_SITE, TRACEBACK, builtin_scenarios, dlbrig

LIBRARY = Path(__import__("dlbrig.rig.scenario", fromlist=["x"]).__file__).parent / "library"
ERROR_LINE = re.compile(r"^error: (?P<file>.+?):(?P<line>\d+): (?P<field>[^:]+): (?P<problem>.+)$",
                        re.M)


def _commands():
    """Every command path of the click tree: ('',), ('run',), ('bench', 'core') ..."""
    import click

    from dlbrig.rig.cli import main

    out = []

    def walk(cmd, path):
        out.append(path)
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, path + (name,))
    walk(main, ())
    return out


COMMANDS = _commands()


# -- scenarios, help, version -------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_scenarios_lists_the_whole_library():
    r = dlbrig("scenarios", timeout=30)
    assert r.returncode == 0, r.stderr
    listed = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
    files = sorted(p.stem for p in LIBRARY.glob("*.yaml"))
    assert listed == files == sorted(builtin_scenarios())
    # each line carries the scenario's one-line summary (first line of its description)
    for line in r.stdout.splitlines():
        name, _, desc = line.partition(" ")
        assert desc.strip(), f"no description for {name}"


def test_every_command_is_known():
    assert {(), ("run",), ("emulate",), ("scenarios",), ("certify",)} <= set(COMMANDS)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "dlbrig")
def test_help_works_on_every_command(path):
    for flag in ("--help", "-h"):
        r = dlbrig(*path, flag, timeout=30)
        assert r.returncode == 0, r.stderr
        assert "Usage:" in r.stdout and TRACEBACK not in r.stderr
        assert r.stderr == ""


@pytest.mark.timeout(60)
def test_help_documents_the_options_of_run_and_emulate():
    r = dlbrig("run", "--help", timeout=30).stdout
    for opt in ("--mode", "--out", "--seed", "--duration", "--speed"):
        assert opt in r
    r = dlbrig("emulate", "--help", timeout=30).stdout
    for opt in ("--bind", "--allow-non-loopback", "--base-port", "--endpoints", "--duration", "--speed"):
        assert opt in r


@pytest.mark.timeout(30)
def test_version():
    r = dlbrig("--version", timeout=30)
    assert r.returncode == 0 and re.search(r"\d+\.\d+", r.stdout), r.stdout + r.stderr


# -- bad scenario files -----------------------------------------------------------------------------
def _small(tmp_path, transform) -> Path:
    text = SMALL_SITE.format(meter_transport="rtu", wd=3, safe=10, react=2)
    p = tmp_path / "bad.yaml"
    p.write_text(transform(text))
    return p


def _line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


def _check_error(r, path, line, field, *fragments):
    assert r.returncode == 2, f"rc {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert TRACEBACK not in r.stderr, r.stderr
    m = ERROR_LINE.search(r.stderr)
    assert m, f"no FILE:LINE: FIELD: PROBLEM line in stderr:\n{r.stderr}"
    assert Path(m["file"]).resolve() == path.resolve() or m["file"] == str(path)
    assert int(m["line"]) == line, r.stderr
    assert m["field"] == field, r.stderr
    for f in fragments:
        assert f in m["problem"], r.stderr
    assert r.stdout == ""


BAD_FILES = {
    "unknown top-level key": (lambda t: t.replace("seed: 1\n", "seed: 1\ncolour: red\n"),
                              "colour: red", "colour", ("unknown key 'colour'",)),
    "unknown nested key": (lambda t: t.replace("profile: sdm630,", "profle: sdm630,"),
                           "profle: sdm630", "meters[0] (main).profle", ("unknown key 'profle'", "profile")),
    "bad arrival time": (lambda t: t.replace('charger: cp2, arrive: "+0s"', 'charger: cp2, arrive: "25:99"'),
                         '"25:99"', "vehicles[1] (ev2).arrive", ("25:99",)),
    "bad timeline time": (lambda t: t + "timeline:\n  - at 10:61 unplug cp1\n",
                          "at 10:61", "timeline[0]", ("10:61",)),
    "bad duration": (lambda t: t.replace("duration: 1h", "duration: forever"),
                     "duration: forever", "duration", ("forever",)),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", BAD_FILES, ids=lambda c: c.replace(" ", "_"))
@pytest.mark.parametrize("command", ["run", "emulate"])
def test_bad_scenario_file_exits_2_with_file_line_field_problem(case, command, tmp_path):
    transform, needle, field, fragments = BAD_FILES[case]
    path = _small(tmp_path, transform)
    out = tmp_path / "out"
    args = ["--out", out] if command == "run" else ["--duration", "1s"]
    r = dlbrig(command, path, *args, timeout=30)
    _check_error(r, path, _line_of(path, needle), field, *fragments)
    assert not out.exists(), "a rejected scenario must not leave an output folder"


@pytest.mark.timeout(30)
def test_unknown_scenario_name_exits_2_listing_builtins(tmp_path):
    r = dlbrig("run", "no_such_scenario", "--out", tmp_path / "o", timeout=30)
    assert r.returncode == 2 and TRACEBACK not in r.stderr
    assert "no_such_scenario" in r.stderr and "base_load_step" in r.stderr


@pytest.mark.timeout(30)
def test_yaml_syntax_error_exits_2(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("name: x\nsite:\n  circuits: [{name: main\n")
    r = dlbrig("run", p, timeout=30)
    assert r.returncode == 2 and TRACEBACK not in r.stderr
    assert ERROR_LINE.search(r.stderr), r.stderr


@pytest.mark.timeout(30)
def test_bad_duration_override_exits_2_without_traceback(tmp_path):
    r = dlbrig("run", "base_load_step", "--duration", "banana", "--out", tmp_path / "o", timeout=30)
    assert r.returncode == 2 and TRACEBACK not in r.stderr
    assert "banana" in r.stderr


@pytest.mark.timeout(30)
def test_bad_duration_override_blames_the_option_not_the_library_file(tmp_path):
    """``--duration banana`` is the user's typo on the command line; the error should say so (as
    ``emulate --duration`` does), not point at line 9 of the built-in base_load_step.yaml, whose
    ``duration: 30m`` is fine."""
    r = dlbrig("run", "base_load_step", "--duration", "banana", "--out", tmp_path / "o", timeout=30)
    assert r.returncode == 2
    assert "--duration" in r.stderr, r.stderr
    assert "library/base_load_step.yaml" not in r.stderr, r.stderr


@pytest.mark.timeout(30)
@pytest.mark.parametrize("speed", ["0", "-2"])
def test_run_bad_speed_is_a_usage_error(speed, tmp_path):
    r = dlbrig("run", "base_load_step", "--mode", "wire", "--duration", "2s", "--speed", speed,
               "--out", tmp_path / "o", timeout=30)
    assert r.returncode == 2, r.stderr[-1500:]
    assert TRACEBACK not in r.stderr


@pytest.mark.timeout(30)
def test_bad_mode_is_a_click_usage_error(tmp_path):
    r = dlbrig("run", "base_load_step", "--mode", "turbo", "--out", tmp_path / "o", timeout=30)
    assert r.returncode == 2 and "turbo" in r.stderr and TRACEBACK not in r.stderr


@pytest.mark.timeout(60)
def test_run_defaults_to_out_scenario_mode_under_cwd(tmp_path):
    r = dlbrig("run", "home", "--mode", "fast", "--duration", "5s", cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out" / "home-fast"
    assert (out / "trace.csv").is_file() and (out / "summary.json").is_file()
    assert "limit: never above" in r.stdout


# -- certify ---------------------------------------------------------------------------------------
#: The full catalog (46 cases, a 200-charger depot among them) takes minutes; these three cheap
#: controller cases (limit, power cap, stale meter) run in a few seconds and include cases the naive
#: negative control must fail (tests/rig/test_certify.py covers the catalog itself).
CERTIFY_CASES = "LIM-001,LIM-008,COM-002"


@pytest.mark.timeout(120)
def test_certify_builtin_core_passes(tmp_path):
    r = dlbrig("certify", "--cases", CERTIFY_CASES, "--out", tmp_path / "c", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert TRACEBACK not in r.stderr
    assert not re.search(r"^\s+FAIL\b", r.stdout, re.M), r.stdout
    assert re.search(r"^3 passed, 0 failed$", r.stdout, re.M), r.stdout


@pytest.mark.timeout(120)
def test_certify_naive_negative_control_fails(tmp_path):
    r = dlbrig("certify", "--dut", "naive", "--cases", CERTIFY_CASES, "--out", tmp_path / "c",
               timeout=120)
    assert r.returncode != 0, "the negative control must fail the certification\n" + r.stdout
    assert r.returncode == 1 and TRACEBACK not in r.stderr
    m = re.search(r"^(\d+) passed, (\d+) failed$", r.stdout, re.M)
    assert m and int(m[2]) >= 1, r.stdout
    # the failures name their case and carry their evidence
    fails = re.findall(r"^\s+FAIL\s+(\S+)\s.*--\s+(.+)$", r.stdout, re.M)
    assert fails and all(why.strip() for _, why in fails), r.stdout
    assert {case for case, _ in fails} <= set(CERTIFY_CASES.split(","))


@pytest.mark.timeout(30)
def test_certify_unknown_dut_is_a_usage_error():
    r = dlbrig("certify", "--dut", "nobody", timeout=30)
    assert r.returncode == 2 and TRACEBACK not in r.stderr
