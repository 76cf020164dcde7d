"""The certification suite's data: test cases, their results, the suite's result.

A :class:`Case` is written in the shape of the OCPP compliance test-case documents: id, title, the
requirement it checks and its source, the DUT role, the scenario, the procedure (main steps) and the
pass criteria. Running a case gives a :class:`CaseResult` (verdicts with evidence, the recording, the
run's output folder); a run of the catalog gives a :class:`SuiteResult`, which the reports render.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

FAMILIES = {
    "LIM": "Limit compliance",
    "FS": "Fault shutdown",
    "COM": "Communication faults",
    "FAIR": "Fairness and rotation",
    "KPI": "Service level",
}


@dataclass
class Case:
    id: str                      # "LIM-001"
    title: str
    requirement: str             # what must hold, in one or two sentences
    source: str                  # standard / document it comes from (standards.md tags)
    role: str                    # "controller" | "charger"
    scenario: str                # built-in scenario name, or "inline"
    procedure: list              # main steps, in order (strings)
    criteria: list               # pass criteria, human-readable (strings)
    checks: Callable | None = None   # (recording, case) -> list[Verdict]
    spec: dict | None = None     # inline scenario (YAML mapping) when scenario == "inline"
    duration: str | None = None  # duration override for the run
    overrides: dict = field(default_factory=dict)   # merged into the scenario's data (e.g. {"site": {"cycle_s": 5}})
    prerequisites: list = field(default_factory=list)
    tags: tuple = ()
    probe: str | None = None     # a charger_probe.PROBES name: judged over Modbus, not from a recording

    @property
    def family(self) -> str:
        return self.id.split("-")[0]


@dataclass
class CaseResult:
    case: Case
    status: str                  # "pass" | "fail" | "error" | "skipped"
    verdicts: list = field(default_factory=list)     # compliance.Verdict
    recording: Any = None        # recording.Recording
    out_dir: str | None = None   # trace.csv, summary.json of this case
    duration_s: float = 0.0
    error: str | None = None
    summary: dict = field(default_factory=dict)      # the run's summary.json


@dataclass
class SuiteResult:
    dut: str
    firmware: str                # "compliant" | "noncompliant"
    seed: int
    started: str                 # ISO time
    duration_s: float = 0.0
    cases: list = field(default_factory=list)        # CaseResult
    interrupted: bool = False

    @property
    def passed(self) -> int:
        return sum(c.status == "pass" for c in self.cases)

    @property
    def failed(self) -> int:
        return sum(c.status in ("fail", "error") for c in self.cases)
